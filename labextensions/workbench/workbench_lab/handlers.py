"""HTTP handlers of the server extension: JSON for the panel, errors that say what to do."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from tornado import web
from workbench import times
from workbench.names import image_name_problem, tag_problem
from workbench.times import aware_utcnow

from .platform import PlatformError
from .usage import read_cgroup, storage_model, usage_model

# a CPU sample older than this is not used: the panel polls every few seconds
SAMPLE_MAX_AGE = 30.0
FIRST_SAMPLE_INTERVAL = 0.5
REUSE_WITHIN = 1.0
SAVE_UNAVAILABLE = "Saving images is not available on this platform version."
SSH_UNAVAILABLE = "SSH access is not available on this platform version."
SSH_OFF = (
    "SSH is off for this instance. Turn it on from the hub home page or with "
    "`workbench instances update {instance} --ssh on`, and add your public key on the "
    "hub's SSH keys page."
)


def parse_time(value: str | None) -> datetime | None:
    """A time the platform sent (ISO 8601), or None if there is none or it is no time."""
    try:
        return times.parse_time(value)
    except (TypeError, ValueError):
        return None


class WorkbenchHandler(ExtensionHandlerMixin, APIHandler):
    """Base handler: the extension's platform client, JSON bodies, platform errors relayed."""

    auth_resource = "workbench"

    def set_default_headers(self):
        super().set_default_headers()
        # tells the panel an answer came from this server, not the hub or the proxy
        self.set_header("X-Workbench-Lab", "1")

    @property
    def platform(self):
        return self.extensionapp.platform

    def json_body(self) -> dict:
        if not self.request.body:
            return {}
        try:
            body = json.loads(self.request.body)
        except ValueError:
            raise web.HTTPError(400, "The request body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise web.HTTPError(400, "The request body must be a JSON object.")
        return body

    async def call(self, coro):
        """Await a platform call; its errors become HTTP errors with the platform's message."""
        try:
            return await coro
        except PlatformError as e:
            raise web.HTTPError(e.code, e.message) from None

    def write_json(self, data, status: int = 200):
        self.set_status(status)
        self.finish(json.dumps(data))

    async def accepted_unless_refused(self, coro, what: str):
        """Run a platform call that stops this server; answer 202 unless it is refused at once.

        The platform checks the request, then stops this server (and for a flavor switch,
        starts it again): the answer must leave before this server goes away. A refusal comes
        within `restart_grace` seconds and is relayed; the call goes on after we answer.
        """
        task = asyncio.ensure_future(coro)
        done, _ = await asyncio.wait({task}, timeout=self.extensionapp.restart_grace)
        if done:
            return await self.call(task)
        task.add_done_callback(lambda t: self._log_outcome(t, what))
        return None

    def _log_outcome(self, task: asyncio.Task, what: str):
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self.log.warning("workbench_lab: %s failed: %s", what, exc)


class InstanceHandler(WorkbenchHandler):
    @web.authenticated
    @authorized
    async def get(self):
        model = await self.call(self.platform.instance_model())
        flavors = await self.call(self.platform.flavors())
        flavor = next((f for f in flavors if f.get("name") == model.get("flavor")), None)
        started = parse_time(model.get("started"))
        uptime = None
        if started is not None and model.get("state") == "running":
            uptime = max(0, int((aware_utcnow() - started).total_seconds()))
        try:
            storage = await asyncio.to_thread(
                storage_model, self.extensionapp.storage_path, model.get("name") or ""
            )
        except OSError as e:
            storage = {"path": self.extensionapp.storage_path, "error": str(e)}
        # whether the platform holds the instance to its size, and if not why
        platform_storage = model.get("storage") or {}
        storage["enforced"] = platform_storage.get("enforced")
        storage["note"] = platform_storage.get("note", "")
        self.write_json(
            {
                "name": model.get("name"),
                "owner": model.get("owner"),
                "description": model.get("description", ""),
                "image": model.get("image"),
                "flavor": model.get("flavor"),
                "flavor_details": flavor,
                "state": model.get("state"),
                "started": model.get("started"),
                "uptime_seconds": uptime,
                "storage_gib": model.get("storage_gib"),
                "storage": storage,
                "ssh": model.get("ssh"),
                "hub_url": model.get("url"),
            }
        )


class UsageHandler(WorkbenchHandler):
    @web.authenticated
    @authorized
    async def get(self):
        app = self.extensionapp
        last = app.last_reading
        if last is not None and time.monotonic() - last.at < REUSE_WITHIN:
            # the panel and the status bar poll together: one reading serves both
            self.write_json(app.last_usage)
            return
        if last is None or time.monotonic() - last.at > SAMPLE_MAX_AGE:
            last = await asyncio.to_thread(read_cgroup, app.cgroup_root)
            await asyncio.sleep(FIRST_SAMPLE_INTERVAL)
        now = await asyncio.to_thread(read_cgroup, app.cgroup_root)
        app.last_reading, app.last_usage = now, usage_model(last, now)
        self.write_json(app.last_usage)


class FlavorsHandler(WorkbenchHandler):
    @web.authenticated
    @authorized
    async def get(self):
        self.write_json(await self.call(self.platform.flavors()))


class FlavorHandler(WorkbenchHandler):
    """Switch this instance's flavor: the platform restarts it with the new limits."""

    @web.authenticated
    @authorized
    async def post(self):
        body = self.json_body()
        flavor = body.get("flavor")
        if not flavor or not isinstance(flavor, str):
            raise web.HTTPError(
                400, 'Send {"flavor": NAME} with one of the flavors of GET workbench/flavors.'
            )
        flavors = await self.call(self.platform.flavors())
        names = [f.get("name") for f in flavors]
        if flavor not in names:
            raise web.HTTPError(
                400, f"Unknown flavor {flavor!r}: pick one of {', '.join(names) or '(none)'}."
            )
        model = await self.call(self.platform.instance_model())
        if model.get("flavor") == flavor:
            raise web.HTTPError(400, f"This instance already has flavor {flavor!r}.")
        self.log.info("workbench_lab: switching flavor %s -> %s", model.get("flavor"), flavor)
        result = await self.accepted_unless_refused(
            self.platform.switch_flavor(flavor), f"switching to flavor {flavor}"
        )
        if result is not None:
            self.write_json(result)
            return
        self.write_json(
            {"state": "restarting", "flavor": flavor, "previous_flavor": model.get("flavor")},
            status=202,
        )


class StopHandler(WorkbenchHandler):
    """Stop this instance (its storage stays); this server goes away after the answer."""

    @web.authenticated
    @authorized
    async def post(self):
        self.log.info("workbench_lab: stopping the instance")
        result = await self.accepted_unless_refused(self.platform.stop(), "stopping")
        if result is not None:
            self.write_json(result)
            return
        self.write_json({"state": "stopping"}, status=202)


class SaveHandler(WorkbenchHandler):
    """Save this instance as an image; GET reports the save's progress."""

    @web.authenticated
    @authorized
    async def get(self):
        try:
            status = await self.platform.save_status()
        except PlatformError as e:
            if e.missing_route:
                self.write_json({"available": False, "reason": SAVE_UNAVAILABLE})
                return
            if e.code == 404:  # no save yet
                self.write_json({"available": True, "state": None})
                return
            raise web.HTTPError(e.code, e.message) from None
        self.write_json({"available": True, **(status or {})})

    @web.authenticated
    @authorized
    async def post(self):
        body = self.json_body()
        name = body.get("name")
        tag = body.get("tag") or "latest"
        description = body.get("description") or ""
        if not name or not isinstance(name, str):
            raise web.HTTPError(400, "Give the image a name (lower-case letters, digits, '-').")
        problem = image_name_problem(name) or tag_problem(tag)
        if problem:
            raise web.HTTPError(400, problem)
        if not isinstance(description, str):
            raise web.HTTPError(400, "The description must be text.")
        try:
            status = await self.platform.save(
                {"name": name, "tag": tag, "description": description}
            )
        except PlatformError as e:
            if e.missing_route:
                raise web.HTTPError(501, SAVE_UNAVAILABLE) from None
            raise web.HTTPError(e.code, e.message) from None
        self.write_json({"available": True, **(status or {})}, status=202)


class SSHHandler(WorkbenchHandler):
    """How to reach this instance over SSH: command and ~/.ssh/config block."""

    @web.authenticated
    @authorized
    async def get(self):
        try:
            details = await self.platform.ssh()
        except PlatformError as e:
            if e.missing_route:
                self.write_json({"available": False, "reason": SSH_UNAVAILABLE})
                return
            raise web.HTTPError(e.code, e.message) from None
        details = {"available": True, **(details or {})}
        if not details.get("enabled"):
            details["reason"] = SSH_OFF.format(instance=self.platform.instance)
        self.write_json(details)
