"""Per-instance keys the gateway signs in to instances' SSH servers with.

Each instance's key pair is derived from one secret in the data folder and the instance's
owner and name, so the hub (which passes the public key to the instance at start) and the
gateway (which signs with the private key) agree without storing keys anywhere.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

SECRET_FILE = "ssh_instance_key_secret"
HOST_KEY_FILE = "ssh_host_ed25519_key"


def ensure_secret(path: str | os.PathLike) -> bytes:
    """The secret at path, created (random, mode 0600) if missing."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    secret = path.read_text().strip()
    if not secret:
        raise RuntimeError(f"{path} is empty: delete it and restart the hub.")
    return secret.encode()


def instance_private_key(secret: bytes, user: str, instance: str) -> ed25519.Ed25519PrivateKey:
    """The gateway's private key for one instance."""
    seed = hmac.new(secret, f"ssh-instance\0{user}\0{instance}".encode(), hashlib.sha256)
    return ed25519.Ed25519PrivateKey.from_private_bytes(seed.digest())


def instance_public_key(secret: bytes, user: str, instance: str) -> str:
    """The OpenSSH public key line an instance's SSH server accepts."""
    key = instance_private_key(secret, user, instance).public_key()
    line = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return line.decode() + " ai-workbench-gateway"


def instance_private_pem(secret: bytes, user: str, instance: str) -> bytes:
    """The private key in OpenSSH's format (for asyncssh.import_private_key)."""
    return instance_private_key(secret, user, instance).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )


def ensure_host_key(path: str | os.PathLike) -> bytes:
    """The gateway's host key (OpenSSH PEM) at path, generated once (mode 0600)."""
    path = Path(path)
    if not path.exists():
        pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        try:
            os.link(tmp, path)  # atomic: never replaces a key another process made
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_bytes()
