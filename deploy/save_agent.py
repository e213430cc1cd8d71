"""The save node agent: its token Secret, DaemonSet and NetworkPolicy (images/node_agent/)."""

from __future__ import annotations

from images.node_agent import AGENT_NAME
from images.node_agent.manifests import make_agent_manifests

from .common import HUB, REGISTRY_SECRET, b64, labels, metadata, selector


def make_manifests(values: dict, namespace: str, secrets) -> list[dict]:
    """Nothing unless saveAgent.enabled; then the agent's token (the hub's save_agent_token
    reads the same Secret), its DaemonSet on every node and the NetworkPolicy that lets only
    the hub's pod reach it."""
    agent = values["saveAgent"]
    if not agent["enabled"]:
        return []
    token = secrets.get("save-agent-token", agent["token"])
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(AGENT_NAME, namespace, "save-agent"),
        "type": "Opaque",
        "data": {"token": b64(token)},
    }
    daemonset, policy = make_agent_manifests(
        namespace=namespace,
        image=agent["image"],
        token_secret=AGENT_NAME,
        registry_secret=REGISTRY_SECRET,
        port=agent["port"],
        insecure_registry=values["registry"]["insecure"],
        hub_pod_labels=selector(HUB),
    )
    for obj in (daemonset, policy):
        obj["metadata"]["labels"] = {**labels("save-agent"), **obj["metadata"]["labels"]}
    template = daemonset["spec"]["template"]
    template["metadata"]["labels"] = {**labels("save-agent"), **template["metadata"]["labels"]}
    if values["registry"]["username"]:
        template["spec"]["imagePullSecrets"] = [{"name": REGISTRY_SECRET}]
    return [secret, daemonset, policy]
