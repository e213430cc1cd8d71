"""The save node agent's server: runs on every node, commits and pushes containers there.

The commands are nerdctl's (`nerdctl --namespace k8s.io commit --pause`, `push`,
`image inspect`, `rmi`), configurable as argv templates; registry credentials come from a
dockerconfigjson Secret mounted as $DOCKER_CONFIG/config.json. A failed save removes the image
it committed. The protocol is in this package's docstring.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import re
import secrets
import time

from tornado import web

from . import CONTAINERD_SOCKET, DEFAULT_PORT

log = logging.getLogger("workbench.node_agent")

NERDCTL = ["nerdctl", "--address", CONTAINERD_SOCKET, "--namespace", "k8s.io"]
DEFAULT_COMMANDS = {
    "commit": [
        *NERDCTL,
        "commit",
        "--pause=true",
        "--message",
        "{message}",
        "{container}",
        "{ref}",
    ],
    "push": [*NERDCTL, "push", "{ref}"],
    "inspect": [*NERDCTL, "image", "inspect", "{ref}"],
    "remove": [*NERDCTL, "rmi", "{ref}"],
}
# a container id as the kubelet reports it (containerd://<64 hex>) or bare
CONTAINER_ID_RE = re.compile(r"^(?:containerd://)?([0-9a-f]{64})$")
# <registry host[:port]>/<path>:<tag> (the distribution reference grammar, simplified)
REF_RE = re.compile(
    r"^[a-z0-9.-]+(?::[0-9]+)?(?:/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)+:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
)
MAX_MESSAGE = 512
KEEP_FINISHED_S = 3600


class CommandFailed(RuntimeError):
    """A command of a save failed; the message says which and why (the end of its stderr)."""


class Saves:
    """Runs saves (commit, push, inspect) one per container at a time, and keeps their status."""

    def __init__(self, commands: dict[str, list[str]], insecure: bool = False, env=None):
        self.commands = {**DEFAULT_COMMANDS, **commands}
        self.insecure = insecure
        self.env = env
        self.saves: dict[str, dict] = {}
        self.running: dict[str, str] = {}  # container id -> save id
        self._tasks: set[asyncio.Task] = set()  # saves under way (kept from collection)

    def argv(self, which: str, **values) -> list[str]:
        argv = [part.format(**values) for part in self.commands[which]]
        if which == "push" and self.insecure:
            argv.insert(len(argv) - 1, "--insecure-registry")
        return argv

    async def run(self, which: str, **values) -> str:
        """Run a command; its stdout, or CommandFailed with the end of its stderr."""
        argv = self.argv(which, **values)
        log.info("running %s", " ".join(argv))
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self.env,
            )
        except OSError as e:
            raise CommandFailed(f"{which}: cannot run {argv[0]}: {e}") from None
        out, err = await proc.communicate()
        if proc.returncode != 0:
            detail = err.decode(errors="replace").strip()[-500:] or f"exit {proc.returncode}"
            raise CommandFailed(f"{which} failed: {detail}")
        return out.decode(errors="replace")

    def start(self, container: str, ref: str, message: str) -> dict:
        if container in self.running:
            raise web.HTTPError(409, f"Container {container[:12]} is already being saved.")
        self._forget_old()
        save_id = secrets.token_hex(8)
        status = {
            "id": save_id,
            "container_id": container,
            "ref": ref,
            "state": "running",
            "step": "queued",
            "progress": 0,
            "message": f"Saving as {ref}",
            "digest": "",
            "size": 0,
            "started": time.time(),
            "finished": None,
        }
        self.saves[save_id] = status
        self.running[container] = save_id
        task = asyncio.create_task(self._save(status, message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return dict(status)

    def _forget_old(self):
        now = time.time()
        for save_id, status in list(self.saves.items()):
            if status["finished"] and now - status["finished"] > KEEP_FINISHED_S:
                del self.saves[save_id]

    async def _save(self, status: dict, message: str):
        container, ref = status["container_id"], status["ref"]
        committed = False
        try:
            status.update(step="commit", progress=20, message="Committing the container")
            committed = True
            await self.run("commit", container=container, ref=ref, message=message)
            status.update(step="push", progress=60, message=f"Pushing {ref}")
            await self.run("push", ref=ref)
            status.update(step="inspect", progress=90, message="Reading the image's size")
            info = json.loads(await self.run("inspect", ref=ref) or "[]")
            info = info[0] if isinstance(info, list) and info else info or {}
            digests = info.get("RepoDigests") or []
            status.update(
                state="done",
                step="done",
                progress=100,
                message=f"Saved and pushed as {ref}",
                digest=(digests[0].rpartition("@")[2] if digests else "") or info.get("Id", ""),
                size=int(info.get("Size") or 0),
            )
            log.info("saved %s as %s", container[:12], ref)
        except Exception as e:  # noqa: BLE001 - any failure ends in the status
            reason = str(e) if isinstance(e, CommandFailed) else f"unexpected error: {e}"
            log.warning("saving %s as %s failed: %s", container[:12], ref, reason)
            if committed:
                try:
                    await self.run("remove", ref=ref)
                except CommandFailed as removal:
                    log.info("nothing to remove for %s: %s", ref, removal)
            status.update(state="failed", step="failed", progress=100, message=reason)
        finally:
            status["finished"] = time.time()
            self.running.pop(container, None)


class AgentHandler(web.RequestHandler):
    """Token-checked JSON handler."""

    def set_default_headers(self):
        self.set_header("Content-Type", "application/json")

    def prepare(self):
        header = self.request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.encode(), self.settings["agent_token"].encode()
        ):
            raise web.HTTPError(401, "Send 'Authorization: Bearer <the agent's token>'.")

    @property
    def saves(self) -> Saves:
        return self.settings["saves"]

    def write_error(self, status_code, **kwargs):
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = getattr(exc, "log_message", None) or self._reason
        self.finish(json.dumps({"status": status_code, "message": message}))


class SavesHandler(AgentHandler):
    """POST /v1/saves: start a save of a container on this node."""

    async def post(self):
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError:
            raise web.HTTPError(400, "The request body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise web.HTTPError(400, "The request body must be a JSON object.")
        unknown = sorted(set(body) - {"container_id", "ref", "message"})
        if unknown:
            raise web.HTTPError(
                400, f"Unknown field(s): {', '.join(unknown)}; send container_id, ref, message."
            )
        match = CONTAINER_ID_RE.match(str(body.get("container_id", "")))
        if not match:
            raise web.HTTPError(
                400, "'container_id' must be a container's id (containerd://<64 hex digits>)."
            )
        ref = body.get("ref")
        if not isinstance(ref, str) or not REF_RE.match(ref):
            raise web.HTTPError(
                400,
                "'ref' must be a registry reference <host>/<path>:<tag>, e.g. "
                "registry.example.com/workbench-saved/alice/bert-env:v1.",
            )
        message = body.get("message") or ""
        if not isinstance(message, str) or len(message) > MAX_MESSAGE:
            raise web.HTTPError(400, f"'message' must be text of at most {MAX_MESSAGE} characters.")
        status = self.saves.start(match.group(1), ref, message)
        self.set_status(202)
        self.set_header("Location", f"/v1/saves/{status['id']}")
        self.finish(json.dumps(status))


class SaveHandler(AgentHandler):
    """GET /v1/saves/{id}: a save's status."""

    def get(self, save_id):
        status = self.saves.saves.get(save_id)
        if status is None:
            raise web.HTTPError(404, f"No save {save_id!r} on this node.")
        self.finish(json.dumps(status))


class HealthHandler(web.RequestHandler):
    """GET /healthz: the readiness probe's (no token)."""

    def get(self):
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"status": "ok", "node": os.environ.get("NODE_NAME", "")}))


def make_agent_app(token: str, saves: Saves) -> web.Application:
    if len(token) < 16:
        raise ValueError("The agent's token must be at least 16 characters.")
    return web.Application(
        [
            (r"/healthz", HealthHandler),
            (r"/v1/saves", SavesHandler),
            (r"/v1/saves/([0-9a-f]+)", SaveHandler),
        ],
        agent_token=token,
        saves=saves,
    )


def main():
    """Serve on $AGENT_PORT with the token in $AGENT_TOKEN (what the DaemonSet sets)."""
    import tornado.ioloop

    logging.basicConfig(
        level=logging.INFO, format="[%(levelname)1.1s %(asctime)s save-agent] %(message)s"
    )
    commands = json.loads(os.environ.get("AGENT_COMMANDS", "{}"))
    saves = Saves(commands, insecure=os.environ.get("AGENT_INSECURE_REGISTRY", "false") == "true")
    app = make_agent_app(os.environ["AGENT_TOKEN"], saves)
    port = int(os.environ.get("AGENT_PORT", DEFAULT_PORT))
    app.listen(port)
    log.info("save agent on node %s listening on port %s", os.environ.get("NODE_NAME"), port)
    tornado.ioloop.IOLoop.current().start()
