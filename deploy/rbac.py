"""The hub's ServiceAccount and namespaced Role: exactly the API calls the hub pod's code makes."""

from __future__ import annotations

from inference_bridge.kserve_manifests import ISVC_PLURAL, KSERVE_GROUP, RUNTIME_PLURAL
from training_bridge.kube_manifests import TRAINER_GROUP, TRAINJOB_PLURAL

from .common import HUB, metadata

METRICS_GROUP = "metrics.k8s.io"

# (API group, resources, verbs), each named by the code that needs it; the tests hold the
# table of every call (tests/deploy/test_rbac.py) and check this against it, both ways
RULES = [
    # KubeSpawner: instance pods (created, watched, deleted), their events (the spawn
    # progress), their PVCs (created if missing, deleted with the instance); the job runner
    # lists and deletes its pods by label; the SSH gateway and the save agent client find
    # pods and nodes; the service runner reads replicas
    ("", ["pods"], ["get", "list", "watch", "create", "delete", "deletecollection"]),
    # jobs' and services' logs
    ("", ["pods/log"], ["get"]),
    ("", ["events"], ["list", "watch"]),
    ("", ["persistentvolumeclaims"], ["get", "create", "delete"]),
    # the job runner: each indexed Job's headless Service (its nodes' names)
    ("", ["services"], ["create", "delete"]),
    ("batch", ["jobs"], ["get", "create", "patch", "delete"]),
    (TRAINER_GROUP, [TRAINJOB_PLURAL], ["get", "create", "patch", "delete"]),
    # the service runner: InferenceServices, its ServingRuntimes, each service's
    # NetworkPolicy, and replicas' CPU and memory from the metrics server
    (KSERVE_GROUP, [ISVC_PLURAL], ["get", "create", "patch", "delete"]),
    (KSERVE_GROUP, [RUNTIME_PLURAL], ["get", "create", "patch"]),
    ("networking.k8s.io", ["networkpolicies"], ["get", "create", "patch", "delete"]),
    (METRICS_GROUP, ["pods"], ["get"]),
]


def make_manifests(namespace: str) -> list[dict]:
    """The hub's ServiceAccount, its Role in the platform's namespace (no ClusterRole: every
    call is namespaced) and the RoleBinding between them."""
    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata(HUB, namespace, HUB),
    }
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": metadata(HUB, namespace, HUB),
        "rules": [
            {"apiGroups": [group], "resources": list(resources), "verbs": list(verbs)}
            for group, resources, verbs in RULES
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": metadata(HUB, namespace, HUB),
        "subjects": [{"kind": "ServiceAccount", "name": HUB, "namespace": namespace}],
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": HUB},
    }
    return [account, role, binding]
