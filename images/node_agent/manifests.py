"""The save node agent's Kubernetes objects: its DaemonSet and the NetworkPolicy in front of it."""

from __future__ import annotations

from . import AGENT_LABELS, AGENT_NAME, CONTAINERD_SOCKET, DEFAULT_PORT


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


def main(argv: list[str]):
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
