"""The save node agent (kubernetes backend): commits an instance's container on its node.

Kubernetes has no engine API to commit a container through. This agent runs as a DaemonSet
pod on every node with the node's containerd socket mounted; the platform service asks the
agent on the instance's node (found through the pod's spec.nodeName) to commit the
instance's container and push the image to the configured registry:

    POST /v1/saves {"container_id", "ref", "message"?}   -> 202 {"id", "state": "running", ...}
    GET  /v1/saves/{id}                                  -> {"state": "running"|"done"|"failed",
                                                             "step", "progress", "message",
                                                             "digest", "size"}
    GET  /healthz                                        -> {"status": "ok"} (no token)

Requests carry `Authorization: Bearer <token>` (the agent's Secret). The commands are
nerdctl's (`nerdctl --namespace k8s.io commit --pause`, `push`, `image inspect`, `rmi`),
configurable as argv templates; registry credentials come from a dockerconfigjson Secret
mounted as $DOCKER_CONFIG/config.json. A failed save removes the image it committed.

Run it with `python -m images.node_agent`; `make_agent_manifests()` builds its DaemonSet.
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
from collections.abc import Callable

from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

log = logging.getLogger("workbench.node_agent")

AGENT_NAME = "workbench-save-agent"
AGENT_LABELS = {"app.kubernetes.io/name": AGENT_NAME, "app.kubernetes.io/part-of": "ai-workbench"}
DEFAULT_PORT = 8765
CONTAINERD_SOCKET = "/run/containerd/containerd.sock"
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


class AgentError(RuntimeError):
    """A save on the node failed; the message says at which step and why."""


# --- the agent: saves run as commands on the node ------------------------------------------


class Saves:
    """Runs saves (commit, push, inspect) one per container at a time, and keeps their status."""

    def __init__(self, commands: dict[str, list[str]], insecure: bool = False, env=None):
        self.commands = {**DEFAULT_COMMANDS, **commands}
        self.insecure = insecure
        self.env = env
        self.saves: dict[str, dict] = {}
        self.running: dict[str, str] = {}  # container id -> save id

    def argv(self, which: str, **values) -> list[str]:
        argv = [part.format(**values) for part in self.commands[which]]
        if which == "push" and self.insecure:
            argv.insert(len(argv) - 1, "--insecure-registry")
        return argv

    async def run(self, which: str, **values) -> str:
        """Run a command; its stdout, or AgentError with the end of its stderr."""
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
            raise AgentError(f"{which}: cannot run {argv[0]}: {e}") from None
        out, err = await proc.communicate()
        if proc.returncode != 0:
            detail = err.decode(errors="replace").strip()[-500:] or f"exit {proc.returncode}"
            raise AgentError(f"{which} failed: {detail}")
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
        asyncio.create_task(self._save(status, message))
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
            reason = str(e) if isinstance(e, AgentError) else f"unexpected error: {e}"
            log.warning("saving %s as %s failed: %s", container[:12], ref, reason)
            if committed:
                try:
                    await self.run("remove", ref=ref)
                except AgentError as removal:
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
    def get(self, save_id):
        status = self.saves.saves.get(save_id)
        if status is None:
            raise web.HTTPError(404, f"No save {save_id!r} on this node.")
        self.finish(json.dumps(status))


class HealthHandler(web.RequestHandler):
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


# --- the platform's side: find the instance's node and ask its agent ------------------------


class AgentClient:
    """Calls one node's agent at url; save() starts a save and polls it to the end."""

    def __init__(self, url: str, token: str, poll: float = 0.5, timeout: float = 3600):
        self.url = url.rstrip("/")
        self.token = token
        self.poll = poll
        self.timeout = timeout
        self.http = AsyncHTTPClient()

    async def _call(self, method: str, path: str, body=None) -> dict:
        request = HTTPRequest(
            self.url + path,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
            body=json.dumps(body) if body is not None else None,
            request_timeout=60,
        )
        try:
            response = await self.http.fetch(request)
        except HTTPClientError as e:
            try:
                message = json.loads(e.response.body).get("message") if e.response else str(e)
            except ValueError:
                message = str(e)
            raise AgentError(f"The node agent at {self.url} refused: {message}") from None
        except OSError as e:
            raise AgentError(f"The node agent at {self.url} is unreachable: {e}") from None
        return json.loads(response.body)

    async def save(
        self,
        container_id: str,
        ref: str,
        message: str = "",
        progress: Callable[[str, int, str], None] | None = None,
    ) -> dict:
        """Commit and push; the final status (digest, size), or AgentError with the reason."""
        status = await self._call(
            "POST", "/v1/saves", {"container_id": container_id, "ref": ref, "message": message}
        )
        deadline = time.monotonic() + self.timeout
        while status["state"] == "running":
            if progress:
                progress(status["step"], status["progress"], status["message"])
            if time.monotonic() > deadline:
                raise AgentError(f"The node agent's save of {ref} did not end in time.")
            await asyncio.sleep(self.poll)
            status = await self._call("GET", f"/v1/saves/{status['id']}")
        if status["state"] != "done":
            raise AgentError(status["message"])
        return status


def own_namespace() -> str:
    """The namespace of the pod this runs in (the hub's); "default" outside a cluster."""
    path = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
    return open(path).read().strip() if os.path.exists(path) else "default"


class NodeAgentSaver:
    """The platform service's saves on Kubernetes: the pod's node, its agent, the save.

    `core` is a kubernetes_asyncio CoreV1Api (in the hub's pod: its service account).
    """

    def __init__(self, core=None, *, token: str, namespace: str = "", port: int = DEFAULT_PORT):
        self.core = core
        self.token = token
        self.namespace = namespace or own_namespace()
        self.port = port

    async def _api(self):
        """The cluster's API with the pod's service account (or a kubeconfig outside)."""
        if self.core is None:
            from kubernetes_asyncio import client, config

            try:
                config.load_incluster_config()
            except config.ConfigException:
                await config.load_kube_config()
            self.core = client.CoreV1Api()
        return self.core

    async def locate(self, state: dict, instance: str) -> tuple[str, str]:
        """(agent URL, container id) of the instance's notebook container."""
        pod_name, pod_namespace = state.get("pod_name"), state.get("namespace")
        if not pod_name or not pod_namespace:
            raise AgentError(f"Instance {instance!r} has no pod; start it and save again.")
        core = await self._api()
        pod = await core.read_namespaced_pod(pod_name, pod_namespace)
        node = pod.spec.node_name
        statuses = [
            s
            for s in pod.status.container_statuses or []
            if s.name == "notebook" and s.state and s.state.running
        ]
        if not node or not statuses or not statuses[0].container_id:
            raise AgentError(f"Instance {instance!r} is not running; start it and save again.")
        selector = ",".join(f"{k}={v}" for k, v in AGENT_LABELS.items())
        agents = await core.list_namespaced_pod(
            self.namespace,
            label_selector=selector,
            field_selector=f"spec.nodeName={node},status.phase=Running",
        )
        ready = [p for p in agents.items if p.status.pod_ip]
        if not ready:
            raise AgentError(
                f"No save agent runs on node {node}: deploy the {AGENT_NAME} DaemonSet in "
                f"namespace {self.namespace} (see the README, 'Saved images')."
            )
        return f"http://{ready[0].status.pod_ip}:{self.port}", statuses[0].container_id

    async def save(self, state, ref, *, labels, user, instance, progress) -> dict:
        progress("container", 5, "Finding the instance's node and container")
        url, container_id = await self.locate(state, instance)
        client = AgentClient(url, self.token)
        return await client.save(
            container_id,
            ref,
            message=f"saved from instance {instance} of {user}",
            progress=progress,
        )


# --- the DaemonSet ---------------------------------------------------------------------------


def make_agent_manifests(
    *,
    namespace: str,
    image: str,
    token_secret: str = AGENT_NAME,
    registry_secret: str = "workbench-registry",
    port: int = DEFAULT_PORT,
    insecure_registry: bool = False,
    hub_pod_labels: dict[str, str] | None = None,
) -> list[dict]:
    """The agent's DaemonSet (a pod on every node, the containerd socket mounted) and a
    NetworkPolicy that lets only the hub's pod (where the platform service runs) reach it.

    The Secrets are the admin's: `token_secret` with key "token" (the same value as the
    save_agent_token setting), `registry_secret` of type kubernetes.io/dockerconfigjson.
    """
    hub_pod_labels = hub_pod_labels or {"app": "jupyterhub", "component": "hub"}
    env = [
        {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "AGENT_PORT", "value": str(port)},
        {"name": "AGENT_INSECURE_REGISTRY", "value": "true" if insecure_registry else "false"},
        {"name": "DOCKER_CONFIG", "value": "/etc/workbench/registry"},
        {
            "name": "AGENT_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": token_secret, "key": "token"}},
        },
    ]
    pod = {
        "metadata": {"labels": dict(AGENT_LABELS)},
        "spec": {
            "containers": [
                {
                    "name": "agent",
                    "image": image,
                    "command": ["python", "-m", "images.node_agent"],
                    "env": env,
                    "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
                    "readinessProbe": {
                        "httpGet": {"path": "/healthz", "port": "http"},
                        "periodSeconds": 10,
                    },
                    "resources": {
                        "requests": {"cpu": "50m", "memory": "64Mi"},
                        "limits": {"memory": "512Mi"},
                    },
                    # root for the containerd socket (root:root 0660); no other privilege
                    "securityContext": {
                        "runAsUser": 0,
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "volumeMounts": [
                        {"name": "containerd", "mountPath": CONTAINERD_SOCKET},
                        {
                            "name": "registry",
                            "mountPath": "/etc/workbench/registry",
                            "readOnly": True,
                        },
                        {"name": "nerdctl-data", "mountPath": "/var/lib/nerdctl"},
                    ],
                }
            ],
            "volumes": [
                {
                    "name": "containerd",
                    "hostPath": {"path": CONTAINERD_SOCKET, "type": "Socket"},
                },
                {
                    "name": "registry",
                    "secret": {
                        "secretName": registry_secret,
                        "items": [{"key": ".dockerconfigjson", "path": "config.json"}],
                    },
                },
                {"name": "nerdctl-data", "emptyDir": {}},
            ],
            # every node, GPU and other tainted nodes included
            "tolerations": [{"operator": "Exists"}],
            "priorityClassName": "system-node-critical",
            "automountServiceAccountToken": False,
        },
    }
    daemonset = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": AGENT_NAME, "namespace": namespace, "labels": dict(AGENT_LABELS)},
        "spec": {
            "selector": {"matchLabels": dict(AGENT_LABELS)},
            "updateStrategy": {"type": "RollingUpdate"},
            "template": pod,
        },
    }
    policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": AGENT_NAME, "namespace": namespace, "labels": dict(AGENT_LABELS)},
        "spec": {
            "podSelector": {"matchLabels": dict(AGENT_LABELS)},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [{"podSelector": {"matchLabels": hub_pod_labels}}],
                    "ports": [{"protocol": "TCP", "port": port}],
                }
            ],
        },
    }
    return [daemonset, policy]


def print_manifests(argv: list[str]):
    """`python -m images.node_agent manifests --namespace NS --image IMAGE [...]`: YAML."""
    import argparse

    import yaml

    parser = argparse.ArgumentParser(prog="python -m images.node_agent manifests")
    parser.add_argument("--namespace", required=True, help="the hub's namespace")
    parser.add_argument("--image", required=True, help="an image with this repo and nerdctl")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--registry-secret", default="workbench-registry")
    parser.add_argument("--insecure-registry", action="store_true")
    args = parser.parse_args(argv)
    manifests = make_agent_manifests(
        namespace=args.namespace,
        image=args.image,
        port=args.port,
        registry_secret=args.registry_secret,
        insecure_registry=args.insecure_registry,
    )
    print(yaml.safe_dump_all(manifests, sort_keys=False), end="")


def main():
    import sys

    import tornado.ioloop

    if sys.argv[1:2] == ["manifests"]:
        print_manifests(sys.argv[2:])
        return

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


if __name__ == "__main__":
    main()
