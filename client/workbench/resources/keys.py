"""SSH keys: the public keys that sign in to instances through the SSH gateway."""

from __future__ import annotations

from . import Namespace, segment


class Keys(Namespace):
    """A user's SSH keys (the token's owner unless `user` is given: admins)."""

    async def _path(self, user: str | None) -> str:
        return f"{await self._client.user_path(user)}/keys"

    async def list(self, user: str | None = None) -> list[dict]:
        return await self._client.api("GET", await self._path(user))

    async def add(self, name: str, public_key: str, user: str | None = None) -> dict:
        """Register a public key (ed25519, ecdsa, rsa >= 2048 bits)."""
        body = {"name": name, "public_key": public_key}
        return await self._client.api("POST", await self._path(user), body)

    async def generate(self, name: str, user: str | None = None) -> dict:
        """A new ed25519 key pair: the key's model with "private_key" (returned only now)."""
        return await self._client.api("POST", f"{await self._path(user)}/generate", {"name": name})

    async def rename(self, key_id: int, name: str, user: str | None = None) -> dict:
        path = f"{await self._path(user)}/{segment(key_id)}"
        return await self._client.api("PATCH", path, {"name": name})

    async def delete(self, key_id: int, user: str | None = None) -> None:
        await self._client.api("DELETE", f"{await self._path(user)}/{segment(key_id)}")
