"""TensorBoard in JupyterLab: opened over the user's runs in this instance, served through
jupyter-server-proxy at <base_url>proxy/<port>/, and stopped."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from jupyter_server.auth.decorator import authorized
from tornado import web
from workbench import WorkbenchError
from workbench.tensorboard import TensorBoardError, TensorBoardProcess, proxy_url

from .handlers import WorkbenchHandler
from .platform import PlatformError
from .training import platform_error

TENSORBOARD_UNAVAILABLE = "TensorBoard is not available on this platform version."
# seconds TensorBoard may take to answer after it starts (a loaded machine reads slowly)
START_LIMIT = 60.0


@dataclass
class OpenTensorBoard:
    """A TensorBoard this server runs: its record on the platform (as made) and process."""

    record: dict
    process: TensorBoardProcess

    def runs(self) -> set[tuple[str, str, int]]:
        return {(r["owner"], r["name"], r["version"]) for r in self.record["runs"]}


class TensorBoardHandler(WorkbenchHandler):
    """The platform's TensorBoard records and this server's TensorBoard processes."""

    @property
    def processes(self) -> dict[int, OpenTensorBoard]:
        """This server's TensorBoards by id, kept for the server's life."""
        return self.settings.setdefault("workbench_tensorboards", {})

    async def api(self, method: str, path: str, body=None):
        """Call the platform API; its refusals become HTTP errors with its message."""

        async def request():
            try:
                return await self.platform.client.api(method, path, body)
            except WorkbenchError as e:
                relayed = platform_error(e)
                if relayed is None:
                    raise
                raise relayed from None

        try:
            return await self.platform.call(request())
        except PlatformError as e:
            if e.missing_route:
                raise web.HTTPError(501, TENSORBOARD_UNAVAILABLE) from None
            raise web.HTTPError(e.code, e.message) from None

    def model(self, record: dict, process: TensorBoardProcess) -> dict:
        return {**record, "url": proxy_url(process.port, self.base_url)}

    async def forget(self, tensorboard_id: int, *, platform: bool, delete: bool = False):
        """Stop the process (if this server runs it) and, with platform, its record."""
        opened = self.processes.pop(tensorboard_id, None)
        if opened is not None:
            await asyncio.to_thread(opened.process.stop)
            self.log.info("workbench_lab: TensorBoard %s stopped", tensorboard_id)
        if platform:
            await self.api("POST", f"tensorboards/{tensorboard_id}/stop")
            if delete:
                await self.api("DELETE", f"tensorboards/{tensorboard_id}")


class TensorBoardsHandler(TensorBoardHandler):
    """GET: the TensorBoards this server runs, with their urls. POST {"runs": [{"name",
    "version"}]} or {"search": ID}: open one in this instance."""

    @web.authenticated
    @authorized
    async def get(self):
        records = {r["id"]: r for r in await self.api("GET", "tensorboards") or []}
        out = []
        for tensorboard_id, opened in list(self.processes.items()):
            record = records.get(tensorboard_id)
            if record is None or record.get("state") != "running":
                # stopped or deleted elsewhere (the API, another tab): the process goes too
                await self.forget(tensorboard_id, platform=False)
            elif not opened.process.running:
                self.log.warning("workbench_lab: TensorBoard %s exited", tensorboard_id)
                await self.forget(tensorboard_id, platform=True)
            else:
                out.append(self.model(record, opened.process))
        self.write_json(out)

    @web.authenticated
    @authorized
    async def post(self):
        body = self.json_body()
        request = {k: body[k] for k in ("runs", "search") if k in body}
        same = self.already_open(request)
        if same is not None:
            self.write_json(same)
            return
        instance = self.platform.instance
        if not instance:
            raise web.HTTPError(
                400, "This server is no ai-workbench instance: open TensorBoard from one."
            )
        record = await self.api("POST", "tensorboards", {"instance": instance, **request})
        root = Path(self.extensionapp.storage_path)
        logdirs = {run["label"]: root / run["logdir"] for run in record["runs"]}
        process = TensorBoardProcess(logdirs)
        try:
            await asyncio.to_thread(process.start, START_LIMIT)
        except (TensorBoardError, ValueError) as e:
            self.log.warning("workbench_lab: TensorBoard %s did not start: %s", record["id"], e)
            await self.forget(record["id"], platform=True, delete=True)
            raise web.HTTPError(500, f"TensorBoard did not start: {e}") from None
        self.processes[record["id"]] = OpenTensorBoard(record, process)
        self.log.info(
            "workbench_lab: TensorBoard %s over %s on port %s",
            record["id"],
            ", ".join(logdirs),
            process.port,
        )
        self.write_json(self.model(record, process), status=201)

    def already_open(self, request: dict) -> dict | None:
        """A running TensorBoard of this server over exactly the runs asked for, if any (a
        second click opens the same one)."""
        runs = request.get("runs")
        if not isinstance(runs, list) or "search" in request:
            return None
        try:
            wanted = {
                (r.get("owner") or self.platform.user, r["name"], int(r["version"])) for r in runs
            }
        except (AttributeError, KeyError, TypeError, ValueError):
            return None  # the platform says what is wrong with it
        for opened in self.processes.values():
            if opened.runs() == wanted and opened.process.running:
                return self.model(opened.record, opened.process)
        return None


class OneTensorBoardHandler(TensorBoardHandler):
    """DELETE /workbench/tensorboards/{id}[?delete=1]: stop it (and delete its record)."""

    @web.authenticated
    @authorized
    async def delete(self, tensorboard_id):
        delete = self.get_argument("delete", "0").lower() in ("1", "true", "yes")
        await self.forget(int(tensorboard_id), platform=True, delete=delete)
        self.set_status(204)
        self.finish()


def routes() -> list[tuple[str, type]]:
    """The extension's TensorBoard routes under <base_url>/workbench/."""
    return [
        (r"/workbench/tensorboards", TensorBoardsHandler),
        (r"/workbench/tensorboards/(\d{1,9})", OneTensorBoardHandler),
    ]
