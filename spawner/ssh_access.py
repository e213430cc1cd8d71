"""How users reach an instance through the gateway: the ssh command and ~/.ssh/config block."""

from __future__ import annotations

from urllib.parse import urlparse


def public_host(settings) -> str:
    """The host name users connect to: ssh_public_host, else the host of bind_url."""
    return settings.ssh_public_host or urlparse(settings.bind_url).hostname or "127.0.0.1"


def ssh_access(settings, user: str, instance: str, ssh: dict | None) -> dict:
    """The instance's SSH settings with the command and config block that reach it."""
    ssh = ssh or {}
    host = public_host(settings)
    port = settings.ssh_port
    login = f"{user}.{instance}"
    alias = f"workbench-{instance}"
    port_arg = "" if port == 22 else f"-p {port} "
    config = "\n".join(
        [
            f"Host {alias}",
            f"    HostName {host}",
            f"    Port {port}",
            f"    User {login}",
            "    ServerAliveInterval 30",
            "",
        ]
    )
    return {
        "enabled": bool(ssh.get("enabled")),
        "allowlist": list(ssh.get("allowlist") or []),
        "host": host,
        "port": port,
        "username": login,
        "alias": alias,
        "command": f"ssh {port_arg}{login}@{host}",
        "config": config,
    }
