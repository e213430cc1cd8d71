"""Who may reach which instance, and where its SSH server listens."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from dataclasses import dataclass

from workbench import HubAPI, WorkbenchError

from hub.db import Database
from ssh_gateway.keys import find_key

log = logging.getLogger("workbench.ssh")

INSTANCE_SSH_PORT = 2222  # the instance's sshd (images/base/workbench-sshd.sh)
LABEL_PREFIX = "ai-workbench"


class InstanceUnavailable(Exception):
    """The instance cannot take SSH connections now; the message says what to do."""


def split_login(login: str) -> tuple[str, str] | None:
    """("user", "instance") from an SSH login "<user>.<instance>"; None if malformed.

    Hub user names may contain dots, instance names cannot: split at the last dot.
    """
    user, dot, instance = login.rpartition(".")
    if not dot or not user or not instance:
        return None
    return user, instance


def allowed_source(allowlist: list[str], address: str) -> bool:
    """Whether address is in the allowlist (an empty list allows every address)."""
    if not allowlist:
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    for entry in allowlist:
        try:
            if ip in ipaddress.ip_network(entry, strict=False):
                return True
        except (ValueError, TypeError):
            continue
    return False


@dataclass
class Target:
    """An instance a user signed in for."""

    user: str
    instance: str
    key_name: str


class Directory:
    """Answers the gateway's questions from the hub's API, the platform database and the
    container engine (or the cluster)."""

    def __init__(
        self,
        hub: HubAPI,
        db: Database,
        *,
        backend: str,
        engine_url: str,
        prefix: str,
        namespace: str = "",
    ):
        self.hub = hub
        self._namespace = namespace
        self.db = db
        self.backend = backend
        self.engine_url = engine_url
        self.prefix = prefix

    async def server(self, user: str, instance: str) -> dict | None:
        try:
            servers = await self.hub.servers(user)
        except WorkbenchError as e:
            log.warning("ssh: cannot ask the hub about %s/%s: %s", user, instance, e)
            return None
        return (servers or {}).get(instance)

    async def authorize(self, login: str, fingerprint: str, source: str) -> Target | None:
        """The target if this key of the user may reach the instance from source, else None
        (for every reason alike: unknown user or instance, wrong key, SSH off, address)."""
        target, _ = await self.decide(login, fingerprint, source)
        return target

    async def decide(self, login: str, fingerprint: str, source: str) -> tuple[Target | None, str]:
        """authorize() with the reason of a refusal, for the gateway's log and the audit log
        only: the client is told "Permission denied" whatever it is. Asked at sign-in, at
        every new channel and periodically for open connections; raises if the hub or the
        database cannot answer."""
        parts = split_login(login)
        if parts is None:
            return None, "the login is not <user>.<instance>"
        user, instance = parts
        key = await self.db.run(lambda s: find_key(s, user, fingerprint, touch=False))
        if key is None:
            return None, "no such key of this user (or no such user)"
        # a hub that does not answer raises: callers refuse a sign-in, but keep connections
        # open rather than close them all for a hub restart
        servers = await self.hub.servers(user)
        if servers is None:
            return None, "no such user"
        server = servers.get(instance)
        if server is None:
            return None, "no such instance"
        ssh = (server.get("user_options") or {}).get("ssh") or {}
        if not ssh.get("enabled"):
            return None, "SSH is off for the instance"
        if not allowed_source(ssh.get("allowlist") or [], source):
            return None, f"{source} is not in the instance's allowlist"
        return Target(user=user, instance=instance, key_name=key["name"]), ""

    async def address(self, user: str, instance: str) -> tuple[str, int]:
        """Where the instance's sshd listens; InstanceUnavailable if it is not running."""
        server = await self.server(user, instance)
        if not server or not server.get("ready"):
            state = "starting" if server and server.get("pending") == "spawn" else "stopped"
            raise InstanceUnavailable(
                f"Instance {instance!r} is {state}. Start it with "
                f"`workbench instances start {instance}` or from the home page, then connect "
                "again."
            )
        if self.backend == "kubernetes":
            host = await self._pod_ip(user, instance)
        else:
            host = await asyncio.to_thread(self._container_ip, user, instance)
        if not host:
            raise InstanceUnavailable(
                f"Instance {instance!r} is running but its address is unknown; restart it with "
                f"`workbench instances stop {instance}` and `workbench instances start {instance}`."
            )
        return host, INSTANCE_SSH_PORT

    def _container_ip(self, user: str, instance: str) -> str | None:
        import docker

        client = docker.APIClient(base_url=self.engine_url, timeout=10)
        try:
            containers = client.containers(
                filters={
                    "label": [f"{LABEL_PREFIX}.user={user}", f"{LABEL_PREFIX}.instance={instance}"]
                }
            )
        finally:
            client.close()
        for c in containers:
            if not any(n.lstrip("/").startswith(self.prefix + "-") for n in c.get("Names", [])):
                continue  # another platform's container on the same engine
            networks = (c.get("NetworkSettings") or {}).get("Networks") or {}
            for net in networks.values():
                if net.get("IPAddress"):
                    return net["IPAddress"]
        return None

    async def _pod_ip(self, user: str, instance: str) -> str | None:
        """The pod IP of an instance (kubernetes backend), by the pod's instance labels."""
        from kubernetes_asyncio import client, config

        from spawner.kube_manifests import LABEL_PREFIX as KUBE_PREFIX
        from spawner.kube_manifests import label_value

        try:
            config.load_incluster_config()
        except config.ConfigException:
            await config.load_kube_config()
        async with client.ApiClient() as api:
            pods = await client.CoreV1Api(api).list_namespaced_pod(
                self.namespace(),
                label_selector=(
                    f"{KUBE_PREFIX}user={label_value(user)},"
                    f"{KUBE_PREFIX}instance={label_value(instance)}"
                ),
            )
        for pod in pods.items:
            if pod.status.pod_ip and pod.status.phase == "Running":
                return pod.status.pod_ip
        return None

    def namespace(self) -> str:
        if self._namespace:
            return self._namespace
        try:
            with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as f:
                return f.read().strip()
        except OSError:
            return "default"
