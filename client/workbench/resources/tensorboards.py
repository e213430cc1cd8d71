"""TensorBoard over your runs, in one of your instances, shown in JupyterLab.

    board = await client.tensorboards.open(["train/1", "train/2"])   # or search=4
    board.url            # <prefix>/proxy/<port>/, JupyterLab's proxy of the TensorBoard
    await board.stop()   # the process ends, the platform marks it stopped

In a notebook of an instance, open() starts TensorBoard in the kernel's instance itself and
the TensorBoard shows in the notebook as a frame. Elsewhere (a script on a laptop) it asks
the JupyterLab of `instance` to start it there; its url is then absolute.
"""

from __future__ import annotations

import asyncio
import html
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from .. import tensorboard as process_helper
from ..errors import WorkbenchError
from . import Namespace, segment
from .experiments import Search, run_ref

if TYPE_CHECKING:
    from ..client import AsyncWorkbenchClient

# the instances' work folder, where the owner's jobs are mounted (at jobs/)
WORK_DIR = "/home/jovyan/work"
START_LIMIT = 60.0


def _unwrap(value):
    """The object under a sync client's wrapper (a Search or Job from the sync client)."""
    try:
        return object.__getattribute__(value, "_namespace")
    except AttributeError:
        return value


def _runs_body(runs) -> list[dict]:
    """[{"owner"?, "name", "version"}] of runs given as Jobs, Trials, "owner/name/version"
    or "name/version" texts, or (name, version) tuples."""
    runs = _unwrap(runs)
    one = isinstance(runs, tuple) and all(isinstance(p, str | int) for p in runs)
    if one or isinstance(runs, str) or not isinstance(runs, Iterable):
        runs = [runs]
    out = []
    for run in runs:
        try:
            owner, name, version = run_ref(run).split("/")
        except (TypeError, ValueError) as e:
            raise WorkbenchError(400, str(e)) from None
        entry = {"name": name, "version": int(version)}
        if owner:
            entry["owner"] = owner
        out.append(entry)
    return out


class TensorBoard:
    """A TensorBoard as opened: .id, .url, .runs (each with "label" and "logdir"), .state,
    .instance, .data (its JSON). stop() ends it, delete() removes its record too; in a
    notebook it shows as a frame of .url."""

    def __init__(
        self,
        client: AsyncWorkbenchClient,
        data: dict,
        *,
        url: str = "",
        process: process_helper.TensorBoardProcess | None = None,
        lab_url: str = "",
    ):
        self._client = client
        self.data = data
        self.id: int = int(data["id"])
        self.url = url or data.get("url") or ""
        self._process = process
        self._lab_url = lab_url  # the instance's /workbench/tensorboards, where it started

    def __repr__(self) -> str:
        return f"<TensorBoard {self.id} in {self.instance} {self.state} at {self.url}>"

    instance = property(lambda self: self.data.get("instance", ""))
    state = property(lambda self: self.data.get("state", ""))
    runs = property(lambda self: list(self.data.get("runs") or []))

    async def refresh(self) -> TensorBoard:
        """Read its record again; returns the TensorBoard itself."""
        self.data = await self._client.api("GET", f"tensorboards/{self.id}")
        return self

    async def stop(self) -> TensorBoard:
        """End it: its process stops and the platform marks it stopped."""
        await self._end(delete=False)
        return await self.refresh()

    async def delete(self) -> None:
        """End it and delete its record."""
        await self._end(delete=True)

    async def _end(self, delete: bool) -> None:
        if self._lab_url:
            url = f"{self._lab_url}/{self.id}"
            await self._client.request("DELETE", url, params={"delete": "1" if delete else "0"})
            return
        if self._process is not None:
            await asyncio.to_thread(self._process.stop)
        await self._client.api("POST", f"tensorboards/{self.id}/stop")
        if delete:
            await self._client.api("DELETE", f"tensorboards/{self.id}")

    def _repr_html_(self) -> str:
        if not self.url:
            return html.escape(repr(self))
        src = html.escape(self.url, quote=True)
        return (
            f'<iframe src="{src}" title="TensorBoard {self.id}" width="100%" height="800" '
            'frameborder="0"></iframe>'
        )


class Tensorboards(Namespace):
    """TensorBoards over your runs' event folders, running in your instances."""

    async def list(self, *, all: bool = False) -> list[dict]:  # noqa: A002 - the API's word
        """Your TensorBoards (all=True: everyone's, for administrators), newest first."""
        return await self._client.api("GET", "tensorboards", params={"all": "1"} if all else None)

    async def get(self, tensorboard_id: int) -> dict:
        return await self._client.api("GET", f"tensorboards/{segment(tensorboard_id)}")

    async def open(
        self,
        runs=None,
        *,
        search: int | Search | None = None,
        instance: str | None = None,
        work_dir: str | os.PathLike = WORK_DIR,
        start_limit: float = START_LIMIT,
    ) -> TensorBoard:
        """Open TensorBoard over your runs (Jobs, Trials, "name/version" texts, (name,
        version) tuples) or a search's trials (search: a Search or its id).

        In a kernel of an instance (and instance None or that instance), TensorBoard runs in
        this instance, started here; else in your instance `instance`, started by its
        JupyterLab. A WorkbenchError says why it cannot open (400: not your runs, no such
        instance; 409: too many running)."""
        runs, search = _unwrap(runs), _unwrap(search)
        if isinstance(runs, Search):
            runs, search = None, runs
        if isinstance(search, Search):
            search = search.id
        if (runs is None) == (search is None):
            raise WorkbenchError(400, "open() takes runs or search=, one of them.")
        body = {"runs": _runs_body(runs)} if runs is not None else {"search": int(search)}
        here = os.environ.get("JUPYTERHUB_SERVER_NAME")
        if here and instance in (None, here):
            return await self._open_here(here, body, Path(work_dir), start_limit)
        if not instance:
            raise WorkbenchError(
                400, "Outside an instance, say which of your instances runs it: instance='nb'."
            )
        return await self._open_in(instance, body)

    async def _open_here(self, instance: str, body: dict, work_dir: Path, start_limit: float):
        client = self._client
        record = await client.api("POST", "tensorboards", {"instance": instance, **body})
        logdirs = {run["label"]: work_dir / run["logdir"] for run in record["runs"]}
        process = process_helper.TensorBoardProcess(logdirs)
        try:
            await asyncio.to_thread(process.start, start_limit)
        except (process_helper.TensorBoardError, ValueError) as e:
            await client.api("POST", f"tensorboards/{record['id']}/stop")
            await client.api("DELETE", f"tensorboards/{record['id']}")
            raise WorkbenchError(500, f"TensorBoard did not start: {e}") from None
        return TensorBoard(client, record, url=process.url(), process=process)

    async def _open_in(self, instance: str, body: dict) -> TensorBoard:
        client = self._client
        user = await client.user_name()
        model = await client.instances.get(instance, user)
        if model.get("state") != "running":
            raise WorkbenchError(
                409,
                f"Instance {instance} is {model.get('state')}: TensorBoard runs in a running "
                f"instance (start it: workbench instances start {instance}).",
            )
        parts = urlsplit(client.url)
        origin = f"{parts.scheme}://{parts.netloc}"
        prefix = parts.path.rstrip("/")
        lab = f"{origin}{prefix}/user/{segment(user)}/{segment(instance)}/workbench/tensorboards"
        _, data = await client.request("POST", lab, body, limit=START_LIMIT + 30)
        url = data.get("url", "")
        if url.startswith("/"):
            url = origin + url
        return TensorBoard(client, data, url=url, lab_url=lab)
