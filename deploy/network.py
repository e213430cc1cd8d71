"""The platform's NetworkPolicies: who may connect to instances, the hub, the proxy and jobs."""

from __future__ import annotations

from spawner.kube_manifests import LABEL_PREFIX, PLATFORM_PODS, make_instance_network_policy
from training_bridge.plan import LABEL_PREFIX as JOB_LABEL_PREFIX

from .common import HUB, PROXY, labels, metadata, selector

# every instance pod has its owner's label (spawner/kube_manifests.py make_labels)
INSTANCE_PODS = {"matchExpressions": [{"key": f"{LABEL_PREFIX}user", "operator": "Exists"}]}
# every pod of a job version has its job's label (training_bridge/plan.py JobPlan.labels)
JOB_LABEL = f"{JOB_LABEL_PREFIX}.job"
JOB_PODS = {"matchExpressions": [{"key": JOB_LABEL, "operator": "Exists"}]}


def _tcp(*ports) -> list[dict]:
    return [{"protocol": "TCP", "port": port} for port in ports]


def make_policies(values: dict, namespace: str, settings) -> list[dict]:
    """- instances: only the hub's and the proxy's pods reach them (spawner/kube_manifests.py);
      egress stays open (the hub's API, package mirrors).
    - hub: its API and the platform API from the proxy and from instances, the SSH
      gateway's port from anywhere (the gateway's Service; the gateway checks keys and
      allowlists), nothing else.
    - proxy: its public port from anywhere, its API only from the hub.
    - jobs: a job's nodes reach each other (rendezvous, collectives); nothing else reaches
      them.
    Services' pods get a policy of their own from the service runner (inference_bridge), the
    save agent from images/node_agent."""
    policies = []
    if values["instances"]["networkPolicy"]:
        instances = make_instance_network_policy(namespace, PLATFORM_PODS)
        instances["metadata"]["labels"] = labels("instances")
        policies.append(instances)
    hub_ports = _tcp("http", "api")
    policies.append(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": metadata(HUB, namespace, HUB),
            "spec": {
                "podSelector": {"matchLabels": selector(HUB)},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "from": [
                            {"podSelector": {"matchLabels": selector(PROXY)}},
                            {"podSelector": INSTANCE_PODS},
                            # the hub's own services call the hub through its Service
                            {"podSelector": {"matchLabels": selector(HUB)}},
                        ],
                        "ports": hub_ports,
                    },
                    {"ports": _tcp("ssh")},
                ],
            },
        }
    )
    policies.append(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": metadata(PROXY, namespace, PROXY),
            "spec": {
                "podSelector": {"matchLabels": selector(PROXY)},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {"ports": _tcp("http")},
                    {
                        "from": [{"podSelector": {"matchLabels": selector(HUB)}}],
                        "ports": _tcp("api"),
                    },
                ],
            },
        }
    )
    policies.append(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": metadata("workbench-jobs", namespace, "jobs"),
            "spec": {
                "podSelector": JOB_PODS,
                "policyTypes": ["Ingress"],
                "ingress": [{"from": [{"podSelector": JOB_PODS}]}],
            },
        }
    )
    return policies
