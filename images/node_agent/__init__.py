"""The save node agent (Kubernetes backend): commits an instance's container on its node.

Kubernetes has no engine API to commit a container through. The agent (agent.py) runs as a
DaemonSet pod on every node with the node's containerd socket mounted (manifests.py); the
platform (client.py) finds the node of the instance's pod, asks the agent on that node to
commit the instance's container and push the image to the configured registry, and polls it:

    POST /v1/saves {"container_id", "ref", "message"?}   -> 202 {"id", "state": "running", ...}
    GET  /v1/saves/{id}                                  -> {"state": "running"|"done"|"failed",
                                                             "step", "progress", "message",
                                                             "digest", "size"}
    GET  /healthz                                        -> {"status": "ok"} (no token)

Requests carry `Authorization: Bearer <token>` (the agent's Secret). Run the agent with
`python -m images.node_agent`; `python -m images.node_agent manifests ...` prints its DaemonSet.

This module holds only what the three sides share, so importing the client loads neither the
agent's server nor the manifests.
"""

AGENT_NAME = "workbench-save-agent"
AGENT_LABELS = {"app.kubernetes.io/name": AGENT_NAME, "app.kubernetes.io/part-of": "ai-workbench"}
DEFAULT_PORT = 8765
CONTAINERD_SOCKET = "/run/containerd/containerd.sock"
