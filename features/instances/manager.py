"""Instance lifecycle on top of JupyterHub's named servers: create, start, stop, switch, delete."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from workbench import HubAPI, WorkbenchError, server_path

from features.quotas.store import QuotaExceeded
from hub.service.api import APIError
from spawner.options import (
    DEFAULT_WORKSPACE,
    FIXED_OPTION_KEYS,
    LIVE_OPTION_KEYS,
    OPTION_KEYS,
    InstancePolicy,
    InvalidOptions,
    ResolvedOptions,
    normalize_options,
    resolve_options,
    validate_instance_name,
)

log = logging.getLogger(__name__)


def is_draft(server: dict) -> bool:
    """A named server whose options were never set and that never ran.

    Opening an instance's spawn page makes one; the instance is created when its form is
    submitted (or the API creates it), so a draft may be taken over by a create.
    """
    return (
        not server.get("user_options") and not server.get("started") and not server.get("pending")
    )


def instance_state(server: dict, failure: str | None = None) -> str:
    """One of creating, starting, running, stopping, stopped, failed."""
    if is_draft(server):
        return "creating"
    if server.get("pending") == "spawn":
        return "starting"
    if server.get("pending") == "stop":
        return "stopping"
    if server.get("ready"):
        return "running"
    if failure:
        return "failed"
    return "stopped"


class InstanceManager:
    """Runs instance operations for the platform API against the hub."""

    def __init__(self, hub: HubAPI, policy: InstancePolicy, *, start_timeout: float = 120):
        self.hub = hub
        self.policy = policy
        self.start_timeout = start_timeout
        self.failures: dict[tuple[str, str], str] = {}
        # features.instances.lifecycle.Lifecycle: auto-stop and crash fields of the model
        self.lifecycle = None
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        # features.quotas.store.QuotaChecker: admission of creates and starts
        self.quotas = None
        # async fn(user, workspace) -> whether the user belongs to it
        self.workspaces = None
        # features.instances.storage.InstanceStorage: the "storage" of models, growing it
        self.storage = None

    def lock(self, user: str, name: str) -> asyncio.Lock:
        """One operation at a time per instance."""
        return self._locks.setdefault((user, name), asyncio.Lock())

    def model(self, user: str, server: dict) -> dict:
        """The API model of an instance from the hub's server model."""
        name = server["name"]
        options = server.get("user_options") or {}
        failure = self.failures.get((user, name))
        state = instance_state(server, failure)
        model = {
            "name": name,
            "owner": user,
            "description": options.get("description", ""),
            "image": options.get("image", self.policy.default_image),
            "flavor": options.get("flavor", self.policy.default_flavor),
            "storage_gib": options.get("storage_gib", self.policy.storage_default_gib),
            "ssh": options.get("ssh", {"enabled": False, "allowlist": []}),
            "workspace": options.get("workspace") or DEFAULT_WORKSPACE,
            "auto_stop": options.get("auto_stop", {}),
            "state": state,
            "url": server.get("url"),
            "started": server.get("started"),
            "last_activity": server.get("last_activity"),
            "progress_url": server.get("progress_url"),
        }
        if state == "failed":
            model["error"] = failure
        if self.lifecycle is not None:
            self.lifecycle.update_model(user, server, model)
        return model

    async def _servers(self, user: str) -> dict:
        servers = await self.hub.servers(user)
        if servers is None:
            raise APIError(404, f"No user {user!r}.")
        return servers

    async def all_servers(self):
        """(user, name, server model) of every user's instances, stopped ones included: one
        request to the hub and one query of live options per 200 users, whatever the
        number of instances (the auto-stop round and workspaces read them all)."""
        offset, limit = 0, 200
        while True:
            users = await self.hub.request(
                "GET", f"/users?include_stopped_servers=1&offset={offset}&limit={limit}"
            )
            if isinstance(users, dict):  # paginated form
                users = users.get("items", [])
            page = {
                user["name"]: {n: s for n, s in (user.get("servers") or {}).items() if n}
                for user in users or []
            }
            if self.hub.live is not None:
                await self.hub.live.overlay_users(page)
            for user, servers in page.items():
                for name, server in servers.items():
                    yield user, name, server
            if not users or len(users) < limit:
                return
            offset += limit

    async def list(self, user: str, workspace: str | None = None) -> list[dict]:
        """The user's instances; with workspace, only those in it."""
        servers = await self._servers(user)
        models = [self.model(user, s) for _, s in sorted(servers.items())]
        if workspace is not None:
            models = [m for m in models if m["workspace"] == workspace]
        if self.storage is not None:
            await self.storage.annotate(user, models)
        return models

    async def get_server(self, user: str, name: str) -> dict:
        # one request to the hub: the user's model holds every server's model, stopped ones
        # included, as the server's own URL answers it (a panel polls this for each instance)
        server = (await self._servers(user)).get(name)
        if server is None:
            raise APIError(404, f"No instance {name!r} of user {user!r}.")
        return server

    async def get(self, user: str, name: str) -> dict:
        model = self.model(user, await self.get_server(user, name))
        if self.storage is not None:
            await self.storage.annotate(user, [model])
        return model

    async def _current(self, user: str, name: str) -> dict:
        """The model after an operation on an instance known to exist."""
        server = await self.hub.server(user, name)
        if server is None:
            raise APIError(404, f"No instance {name!r} of user {user!r}.")
        return self.model(user, server)

    async def _resolve(self, options: dict, user: str | None = None) -> ResolvedOptions:
        """The options validated, with their image and flavor: once per request, passed on."""
        # a saved image is looked up in the database, off the event loop
        await self.policy.prefetch(user, (options or {}).get("image"))
        try:
            return resolve_options(options, self.policy, user)
        except InvalidOptions as e:
            raise APIError(400, str(e)) from None

    async def create(self, user: str, body: dict) -> dict:
        """Validate, register the named server, start it and wait until it runs.

        If it fails to start, the server and its storage are removed again, so a
        failed create leaves nothing behind.
        """
        body = dict(body)
        name = body.pop("name", None)
        start = body.pop("start", True)
        try:
            validate_instance_name(name)
        except InvalidOptions as e:
            raise APIError(400, str(e)) from None
        if not isinstance(start, bool):
            raise APIError(400, "'start' must be true or false.")
        resolved = await self._resolve(body, user)
        spec = resolved.spec
        if self.workspaces is not None and not await self.workspaces(user, spec.workspace):
            raise APIError(
                404,
                f"No workspace {spec.workspace!r} of yours: pick one of your workspaces "
                "(GET .../api/workspaces), or ask an administrator to add you to it.",
            )
        servers = await self._servers(user)
        draft = name in servers and is_draft(servers[name])
        if name in servers and not draft:
            raise APIError(409, f"Instance {name!r} already exists. Pick another name.")
        async with self.lock(user, name):
            async with self._admission(user):
                if self.quotas is not None:
                    # re-read under the user's admission lock: concurrent creates see each other
                    servers = await self._servers(user)
                    if name in servers and not is_draft(servers[name]):
                        raise APIError(409, f"Instance {name!r} already exists.")
                    await self._admit(user, name, resolved, servers, True, start)
                try:
                    await self.hub.request(
                        "PATCH" if draft else "PUT",
                        server_path(user, name),
                        {"user_options": spec.to_options()},
                    )
                except WorkbenchError as e:
                    self._admitted(user, name)
                    # no answer from the hub (status 0) or its own failure: a bad gateway
                    raise APIError(e.code if 0 < e.code < 500 else 502, e.message) from None
            log.info("instance %s/%s created: %s", user, name, spec)
            if start:
                try:
                    await self._start_and_wait(user, name)
                except APIError:
                    await self._remove(user, name)
                    raise
                finally:
                    self._admitted(user, name)
        return await self._current(user, name)

    def _admission(self, user: str):
        """The user's admission lock (a no-op without quotas)."""
        if self.quotas is None:
            return contextlib.nullcontext()
        return self.quotas.lock(user)

    async def _admit(self, user, name, resolved: ResolvedOptions, servers, create, start):
        try:
            await self.quotas.admit(
                user,
                name,
                resolved.to_options(),
                servers,
                create=create,
                start=start,
                flavor=resolved.flavor,
            )
        except QuotaExceeded as e:
            raise APIError(403, str(e)) from None

    def _admitted(self, user: str, name: str):
        """An admitted start has finished (or failed): it counts by its server state again."""
        if self.quotas is not None:
            self.quotas.finished_start(user, name)

    async def start(self, user: str, name: str) -> dict:
        server = await self.get_server(user, name)
        async with self.lock(user, name):
            if server.get("ready") or server.get("pending") == "spawn":
                return self.model(user, server)
            if server.get("pending") == "stop":
                await self._wait_stopped(user, name)
            # options are checked before the hub sees them: settings may have changed
            resolved = await self._resolve(server.get("user_options") or {}, user)
            if self.quotas is not None:
                async with self._admission(user):
                    servers = await self._servers(user)
                    await self._admit(user, name, resolved, servers, False, True)
            try:
                await self._start_and_wait(user, name)
            finally:
                self._admitted(user, name)
        return await self._current(user, name)

    async def stop(self, user: str, name: str) -> dict:
        server = await self.get_server(user, name)
        async with self.lock(user, name):
            if not server.get("stopped") or server.get("pending"):
                await self._stop(user, name)
        return await self._current(user, name)

    async def update(self, user: str, name: str, body: dict) -> dict:
        """Change options; a running instance restarts only if its image or flavor changes.

        Description, SSH and auto-stop settings apply to a running instance at once.
        """
        server = await self.get_server(user, name)
        current = dict(server.get("user_options") or {})
        allowed = set(OPTION_KEYS) - set(FIXED_OPTION_KEYS)
        unknown = sorted(set(body) - set(OPTION_KEYS))
        if unknown:
            raise APIError(
                400,
                f"Cannot change {', '.join(unknown)}; changeable: {', '.join(sorted(allowed))}.",
            )
        if "storage_gib" in body and body["storage_gib"] != current.get(
            "storage_gib", self.policy.storage_default_gib
        ):
            await self._grow(user, name, server, current, body["storage_gib"])
            server = await self.get_server(user, name)
            current = dict(server.get("user_options") or {})
        if "workspace" in body and body["workspace"] != (
            current.get("workspace") or DEFAULT_WORKSPACE
        ):
            raise APIError(
                400,
                "An instance stays in the workspace it was created in. Save it as an image and "
                "create a new instance in the other workspace.",
            )
        spec = (await self._resolve({**current, **body}, user)).spec
        after = spec.to_options()
        try:
            # what is stored, with defaults filled in (its image and flavor need no lookup:
            # only whether they change matters)
            before = normalize_options(current, self.policy).to_options()
        except InvalidOptions:
            # what is stored is no longer valid (settings changed, or stored unchecked by an
            # older version): the valid options asked for replace it
            before = {key: current.get(key, value) for key, value in after.items()}
        if after == before:
            return self.model(user, server)
        needs_restart = any(after[k] != before[k] for k in after if k not in LIVE_OPTION_KEYS)
        async with self.lock(user, name):
            active = not server.get("stopped") or bool(server.get("pending"))
            if active and not needs_restart and self.hub.live is not None:
                # the hub does not change a running server's options: keep the change beside
                # them until the instance stops
                live = {k: after[k] for k in LIVE_OPTION_KEYS}
                await self.hub.live.set(user, name, live)
                log.info("instance %s/%s updated while running: %s", user, name, live)
                return await self._current(user, name)
            if active:
                await self._stop(user, name)
            await self.hub.request("PATCH", server_path(user, name), {"user_options": after})
            if self.hub.live is not None:
                await self.hub.live.clear(user, name)
            log.info("instance %s/%s updated: %s", user, name, spec)
            if active:
                await self._start_and_wait(user, name)
        return await self._current(user, name)

    async def _grow(self, user: str, name: str, server: dict, current: dict, size) -> None:
        """Grow a stopped instance's storage to `size` GiB (within its owner's quota)."""
        before = current.get("storage_gib", self.policy.storage_default_gib)
        low, high = self.policy.storage_min_gib, self.policy.storage_max_gib
        if isinstance(size, bool) or not isinstance(size, int) or not low <= size <= high:
            raise APIError(400, f"storage_gib must be a whole number of GiB from {low} to {high}.")
        if size < before:
            raise APIError(
                400,
                f"Storage is never shrunk: instance {name!r} has {before} GiB. Copy what you "
                "keep to a new, smaller instance instead.",
            )
        if not server.get("stopped") or server.get("pending"):
            raise APIError(
                409,
                f"Instance {name!r} is running: stop it first, its storage grows while it is "
                f"stopped (`workbench instances stop {name}`).",
            )
        options = {**current, "storage_gib": size}
        async with self.lock(user, name), self._admission(user):
            if self.quotas is not None:
                servers = await self._servers(user)
                resolved = await self._resolve(options, user)
                await self._admit(user, name, resolved, servers, create=True, start=False)
            if self.storage is not None:
                await self.storage.grow(user, name, size)
            await self.hub.request("PATCH", server_path(user, name), {"user_options": options})
        log.info("instance %s/%s: storage %s -> %s GiB", user, name, before, size)

    async def delete(self, user: str, name: str) -> None:
        server = await self.get_server(user, name)
        if not server.get("stopped") or server.get("pending"):
            raise APIError(
                409,
                f"Instance {name!r} is running. Stop it first "
                f"(POST .../instances/{name}/stop or `workbench instances stop {name}`).",
            )
        async with self.lock(user, name):
            await self._remove(user, name)

    # steps

    async def _remove(self, user: str, name: str):
        try:
            await self.hub.request("DELETE", server_path(user, name), {"remove": True})
        except WorkbenchError as e:
            if e.code != 404:
                raise APIError(502, f"Removing instance {name!r} failed: {e.message}") from e
        if self.hub.live is not None:
            await self.hub.live.clear(user, name)
        self.failures.pop((user, name), None)
        log.info("instance %s/%s deleted with its storage", user, name)

    async def _start_and_wait(self, user: str, name: str):
        self.failures.pop((user, name), None)
        try:
            status, _ = await self.hub.request_status("POST", server_path(user, name))
        except WorkbenchError as e:
            self._record_failure(user, name, e.message)
            code = (
                e.code if 0 < e.code < 500 or e.code in (503, 504) else 502 if not e.code else 500
            )
            raise APIError(code, self._failed(name, e.message)) from e
        if status == 201:
            return  # started within the hub's slow_spawn_timeout: it is ready
        last = "no progress reported"
        async for event in self.hub.progress(user, name, limit=self.start_timeout + 10):
            last = event.get("message", last)
            if event.get("ready"):
                return
            if event.get("failed"):
                self._record_failure(user, name, last)
                raise APIError(400, self._failed(name, last))
        server = await self.hub.server(user, name)
        if server and server.get("ready"):
            return
        self._record_failure(user, name, last)
        raise APIError(504, self._failed(name, f"not running after {self.start_timeout} s"))

    def _record_failure(self, user: str, name: str, message: str):
        self.failures[(user, name)] = message
        log.warning("instance %s/%s failed to start: %s", user, name, message)

    @staticmethod
    def _failed(name: str, message: str) -> str:
        message = message.removeprefix("Spawn failed: ").strip()
        if not message:
            # JupyterHub's start timeout carries no text of its own
            message = (
                "it was not running within the start timeout (the machine may be busy "
                "starting others): start it again"
            )
        return f"Instance {name!r} failed to start: {message}"

    async def _stop(self, user: str, name: str):
        try:
            await self.hub.request("DELETE", server_path(user, name))
        except WorkbenchError as e:
            raise APIError(502, f"Stopping instance {name!r} failed: {e.message}") from e
        await self._wait_stopped(user, name)

    async def _wait_stopped(self, user: str, name: str, limit: float = 60):
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            server = await self.hub.server(user, name)
            if server is None or (server.get("stopped") and not server.get("pending")):
                return
            await asyncio.sleep(0.2)
        raise APIError(504, f"Instance {name!r} did not stop within {limit:.0f} s.")
