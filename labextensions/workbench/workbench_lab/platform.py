"""This instance's calls to the platform API (the workbench client, with the instance's own
token), and their errors as the panel is told them."""

from __future__ import annotations

from workbench import AsyncWorkbenchClient, WorkbenchError

# calls after which the platform stops (and restarts) this server: they take that long
RESTART_LIMIT = 600.0
SAVE_LIMIT = 60.0


class PlatformError(Exception):
    """The platform answered with an error, or did not answer (code 502/504).

    `missing_route` is true when the platform has no such route at all (an older platform
    version), as opposed to a JSON 404 about a missing instance or resource.
    """

    def __init__(self, code: int, message: str, *, missing_route: bool = False):
        self.code = code
        self.message = message
        self.missing_route = missing_route
        super().__init__(f"{code}: {message}")


class PlatformClient:
    """The platform API at `url` (…/services/workbench/api) for one instance."""

    def __init__(self, url: str, token: str, user: str, instance: str, timeout: float = 10):
        self.client = AsyncWorkbenchClient(
            api_url=url, token=token, user=user, timeout=timeout, connect_timeout=5.0
        )
        self.user = user
        self.instance = instance

    @property
    def url(self) -> str:
        return self.client.api_url

    @url.setter
    def url(self, value: str):
        self.client.api_url = value.rstrip("/")

    @property
    def token(self) -> str:
        return self.client.token

    @property
    def timeout(self) -> float:
        return self.client.timeout

    async def call(self, coro):
        """Await a call of the client; PlatformError on errors and no answer."""
        if not self.url or not self.token:
            coro.close()
            raise PlatformError(
                503,
                "This server does not know the platform API's address or has no token "
                "(it runs outside an ai-workbench instance). Open JupyterLab from the "
                "ai-workbench hub.",
            )
        try:
            return await coro
        except WorkbenchError as e:
            raise self._error(e) from None

    def _error(self, e: WorkbenchError) -> PlatformError:
        if e.status == 0:
            return PlatformError(
                502,
                f"The platform API at {self.url} does not answer ({e.detail or e.message}). "
                "The hub may be restarting: try again in a minute; if it persists, tell your "
                "administrator.",
            )
        if e.missing_route:
            return PlatformError(404, "No such route on the platform API.", missing_route=True)
        if e.status in (401, 403):
            return PlatformError(
                502,
                f"The platform API refused this instance's token ({e.message}). The hub's "
                "'server' role needs the scope access:services!service=workbench: tell your "
                "administrator.",
            )
        return PlatformError(e.status if e.status < 500 else 502, e.message)

    async def aclose(self):
        await self.client.aclose()

    # the calls

    async def instance_model(self) -> dict:
        return await self.call(self.client.instances.get(self.instance, self.user))

    async def flavors(self) -> list[dict]:
        return await self.call(self.client.flavors.list())

    async def switch_flavor(self, flavor: str) -> dict:
        # the platform stops, changes and starts the instance: it answers when running again
        instances = self.client.instances
        return await self.call(
            instances.update(self.instance, self.user, flavor=flavor, limit=RESTART_LIMIT)
        )

    async def stop(self) -> dict:
        instances = self.client.instances
        return await self.call(instances.stop(self.instance, self.user, limit=RESTART_LIMIT))

    async def save_status(self) -> dict:
        return await self.call(self.client.images.save_status(self.instance, self.user))

    async def save(self, body: dict) -> dict:
        save = self.client.images.save(
            self.instance,
            body["name"],
            body.get("tag") or "latest",
            body.get("description") or "",
            self.user,
            limit=SAVE_LIMIT,
        )
        return await self.call(save)

    async def ssh(self) -> dict:
        return await self.call(self.client.instances.ssh(self.instance, self.user))
