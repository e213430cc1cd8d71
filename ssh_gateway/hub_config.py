"""What the SSH feature sets in the hub's configuration: instances' keys for the gateway."""

from __future__ import annotations

from spawner.instance_keys import SECRET_FILE, ensure_secret


def hub_config(c, hub) -> None:
    """The secret the gateway's per-instance keys derive from; instances get their public key."""
    secret = hub.data / SECRET_FILE
    ensure_secret(secret)
    hub.spawner.ssh_key_secret_file = str(secret)
