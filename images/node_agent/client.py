"""The platform's side of the save node agent: find the instance's node, ask its agent to save.

What the platform service calls (through images.savers.NodeAgentImageSaver); it never imports
the agent's server.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from . import AGENT_LABELS, AGENT_NAME, DEFAULT_PORT


class AgentError(RuntimeError):
    """A save on the node failed; the message says at which step and why."""


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
    if not os.path.exists(path):
        return "default"
    with open(path) as f:
        return f.read().strip()


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
