"""Who may reach which instance, and where its SSH server listens."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import time
from dataclasses import dataclass

from sqlalchemy import select
from workbench import HubAPI, WorkbenchError

from features.instances.live_options import LiveOptions
from hub.db import Database
from spawner.container import labels_match
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


def _overlay(server: dict, live: dict) -> dict:
    """A copy of a hub server model with live options laid over its user_options (as
    LiveOptionsStore.overlay does), leaving the kept model untouched."""
    if not live or server.get("user_options") is None:
        return server
    return {**server, "user_options": {**server["user_options"], **live}}


@dataclass
class Target:
    """An instance a user signed in for."""

    user: str
    instance: str
    key_name: str


def _live_options(session, user: str, instance: str) -> dict:
    """The options changed while the instance runs (features.instances.live_options)."""
    row = session.scalars(
        select(LiveOptions).where(LiveOptions.user == user, LiveOptions.instance == instance)
    ).first()
    return json.loads(row.options) if row is not None else {}


def _key_and_live_options(session, user: str, instance: str, key_fingerprint: str):
    """(the user's key with that fingerprint or None, the instance's live options): one
    transaction, so a sign-in or a new channel costs one trip to the database."""
    key = find_key(session, user, key_fingerprint, touch=False)
    if key is None:
        return None, {}
    return key, _live_options(session, user, instance)


class Directory:
    """Answers the gateway's questions from the hub's API, the platform database and the
    container engine (or the cluster).

    The database (keys, SSH settings changed on running instances) is read afresh for every
    decision. The hub's answer about a user's instances is kept and reused only while the
    caller can vouch that it still holds (see decide()): a running instance's options cannot
    change in the hub, so while the instance runs without a break, what the hub said about
    it after it started stays true, and the gateway need not ask again at every sign-in.
    """

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
        # user: (time.monotonic() when the hub was asked, its answer: servers or None)
        self._servers: dict[str, tuple[float, dict | None]] = {}
        self._asking: dict[str, tuple[float, asyncio.Future]] = {}  # user: (since, answer)
        # (user, instance): (the hub's `started` of the run, its sshd's host)
        self._addresses: dict[tuple[str, str], tuple[str, str]] = {}

    def forget(self, user: str):
        """Drop what the hub said about user's instances: the next decision asks again."""
        self._servers.pop(user, None)

    async def servers(self, user: str, since: float | None = None) -> dict | None:
        """The hub's models of user's instances (without live options); None if no such user.

        since: an answer the hub gave at or after this time.monotonic() will do (one kept,
        or one on its way); None asks afresh. Raises if the hub does not answer.
        """
        if since is not None:
            kept = self._servers.get(user)
            if kept is not None and kept[0] >= since:
                return kept[1]
        else:
            since = time.monotonic()
        asking = self._asking.get(user)
        if asking is None or asking[0] < since:
            asked = time.monotonic()
            future = asyncio.ensure_future(self._ask_hub(user, asked))
            self._asking[user] = asking = (asked, future)

            def done(f, user=user):
                if self._asking.get(user, (0.0, None))[1] is f:
                    del self._asking[user]
                if not f.cancelled():
                    f.exception()  # retrieved here: every waiter may have left

            future.add_done_callback(done)
        # callers that ask at once share one request to the hub
        return await asyncio.shield(asking[1])

    async def _ask_hub(self, user: str, asked: float) -> dict | None:
        servers = await self.hub.servers(user)
        kept = self._servers.get(user)
        if kept is None or kept[0] <= asked:
            self._servers[user] = (asked, servers)
        return servers

    async def server(self, user: str, instance: str, since: float | None = None) -> dict | None:
        """An instance's hub model, with live options laid over; None if unknown or the hub
        does not answer."""
        try:
            servers = await self.servers(user, since)
        except WorkbenchError as e:
            log.warning("ssh: cannot ask the hub about %s/%s: %s", user, instance, e)
            return None
        server = (servers or {}).get(instance)
        if server is None:
            return None
        live = await self.db.run(lambda s: _live_options(s, user, instance))
        return _overlay(server, live)

    async def authorize(self, login: str, fingerprint: str, source: str) -> Target | None:
        """The target if this key of the user may reach the instance from source, else None
        (for every reason alike: unknown user or instance, wrong key, SSH off, address)."""
        target, _ = await self.decide(login, fingerprint, source)
        return target

    async def decide(
        self, login: str, fingerprint: str, source: str, since: float | None = None
    ) -> tuple[Target | None, str]:
        """authorize() with the reason of a refusal, for the gateway's log and the audit log
        only: the client is told "Permission denied" whatever it is. Asked at sign-in, at
        every new channel and periodically for open connections; raises if the hub or the
        database cannot answer.

        The key and the live SSH settings are always read afresh. since: the hub's answer
        may be one given at or after this time.monotonic() (the gateway passes the time its
        open connection to the running instance was made); None asks the hub afresh.
        """
        parts = split_login(login)
        if parts is None:
            return None, "the login is not <user>.<instance>"
        user, instance = parts
        key, live = await self.db.run(
            lambda s: _key_and_live_options(s, user, instance, fingerprint)
        )
        if key is None:
            return None, "no such key of this user (or no such user)"
        # a hub that does not answer raises: callers refuse a sign-in, but keep connections
        # open rather than close them all for a hub restart
        servers = await self.servers(user, since)
        if servers is None:
            return None, "no such user"
        server = servers.get(instance)
        if server is None:
            return None, "no such instance"
        ssh = (_overlay(server, live).get("user_options") or {}).get("ssh") or {}
        if not ssh.get("enabled"):
            return None, "SSH is off for the instance"
        if not allowed_source(ssh.get("allowlist") or [], source):
            return None, f"{source} is not in the instance's allowlist"
        return Target(user=user, instance=instance, key_name=key["name"]), ""

    async def address(
        self, user: str, instance: str, since: float | None = None, *, known: bool = True
    ) -> tuple[str, int]:
        """Where the instance's sshd listens; InstanceUnavailable if it is not running.

        since: as for decide(). known: the address found for this very run of the instance
        (the hub's `started` time) may be used again; asking the engine costs from tens to
        hundreds of milliseconds. A wrong one can reach no other instance: each instance's
        sshd accepts only the gateway's key for that instance.
        """
        server = await self.server(user, instance, since)
        if not server or not server.get("ready"):
            state = "starting" if server and server.get("pending") == "spawn" else "stopped"
            raise InstanceUnavailable(
                f"Instance {instance!r} is {state}. Start it with "
                f"`workbench instances start {instance}` or from the home page, then connect "
                "again."
            )
        started = server.get("started") or ""
        kept = self._addresses.get((user, instance))
        if known and started and kept is not None and kept[0] == started:
            return kept[1], INSTANCE_SSH_PORT
        if self.backend == "kubernetes":
            host = await self._pod_ip(user, instance)
        else:
            host = await asyncio.to_thread(self._container_ip, user, instance)
        if not host:
            raise InstanceUnavailable(
                f"Instance {instance!r} is running but its address is unknown; restart it with "
                f"`workbench instances stop {instance}` and `workbench instances start {instance}`."
            )
        if started:
            if len(self._addresses) > 10000:
                self._addresses.clear()
            self._addresses[(user, instance)] = (started, host)
        return host, INSTANCE_SSH_PORT

    def kept_address(self, user: str, instance: str) -> str | None:
        """The host kept for the instance's sshd, if any (see address())."""
        kept = self._addresses.get((user, instance))
        return kept[1] if kept is not None else None

    def forget_address(self, user: str, instance: str):
        """The address kept for an instance did not answer: find it again next time."""
        self._addresses.pop((user, instance), None)

    def _container_ip(self, user: str, instance: str) -> str | None:
        import docker

        client = docker.APIClient(base_url=self.engine_url, timeout=10)
        wanted = {f"{LABEL_PREFIX}.user": user, f"{LABEL_PREFIX}.instance": instance}
        try:
            containers = client.containers(
                filters={"label": [f"{key}={value}" for key, value in wanted.items()]}
            )
        finally:
            client.close()
        for c in containers:
            if not labels_match(c.get("Labels"), wanted):
                continue  # Podman lists what has any one of the labels
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
