"""The SSH gateway's Service: a port of its own (22) to the gateway's port in the hub pod."""

from __future__ import annotations

from .common import HUB, SSH_SERVICE
from .proxy import make_public_service


def make_service(values: dict, namespace: str) -> list[dict]:
    """The gateway's Service (none when ssh.enabled is false). LoadBalancer and NodePort keep
    the client's address (externalTrafficPolicy Local), which instances' SSH allowlists
    check; otherwise every connection would come from a node's address."""
    ssh = values["ssh"]
    if not ssh["enabled"]:
        return []
    service = make_public_service(
        ssh["service"], namespace, SSH_SERVICE, HUB, [("ssh", ssh["service"]["port"], "ssh")]
    )
    if service["spec"]["type"] != "ClusterIP":
        service["spec"]["externalTrafficPolicy"] = "Local"
    return [service]
