"""The hub's Role grants exactly the Kubernetes API calls the code in the hub's pod makes.

No cluster runs here: the rendered Roles and RoleBindings are evaluated as the API server's
RBAC authorizer does (apiGroups, resources with subresources, verbs, resourceNames; only
rules bound to the pod's ServiceAccount count). CALLS is the table of every call, by the
code that makes it; a scan of the sources (the platform's kubernetes_asyncio calls with the
CustomObjectsApi's groups and plurals resolved, KubeSpawner's calls and watches) keeps it
honest: a call the table lacks fails the test.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from pathlib import Path

import kubernetes_asyncio.client as k8s
import kubespawner.spawner

from tests.deploy.bundle_helpers import HUB_IMAGE, REPO, bundle, find

# (code, verb, API group, resource[/subresource], namespaced)
CALLS = [
    # KubeSpawner: instance pods, their events (spawn progress) and PVCs
    ("kubespawner", "create", "", "pods", True),
    ("kubespawner", "delete", "", "pods", True),
    ("kubespawner", "list", "", "pods", True),
    ("kubespawner", "watch", "", "pods", True),
    ("kubespawner", "list", "", "events", True),
    ("kubespawner", "watch", "", "events", True),
    ("kubespawner", "create", "", "persistentvolumeclaims", True),
    ("kubespawner", "get", "", "persistentvolumeclaims", True),
    ("kubespawner", "delete", "", "persistentvolumeclaims", True),
    # the job runner (training_bridge/kubernetes.py)
    ("training_bridge", "create", "", "services", True),
    ("training_bridge", "delete", "", "services", True),
    ("training_bridge", "create", "batch", "jobs", True),
    ("training_bridge", "get", "batch", "jobs", True),
    ("training_bridge", "patch", "batch", "jobs", True),
    ("training_bridge", "delete", "batch", "jobs", True),
    ("training_bridge", "create", "trainer.kubeflow.org", "trainjobs", True),
    ("training_bridge", "get", "trainer.kubeflow.org", "trainjobs", True),
    ("training_bridge", "patch", "trainer.kubeflow.org", "trainjobs", True),
    ("training_bridge", "delete", "trainer.kubeflow.org", "trainjobs", True),
    ("training_bridge", "list", "", "pods", True),
    ("training_bridge", "deletecollection", "", "pods", True),
    ("training_bridge", "get", "", "pods/log", True),
    # the service runner (inference_bridge/service_kubernetes.py)
    ("inference_bridge", "get", "serving.kserve.io", "inferenceservices", True),
    ("inference_bridge", "create", "serving.kserve.io", "inferenceservices", True),
    ("inference_bridge", "patch", "serving.kserve.io", "inferenceservices", True),
    ("inference_bridge", "delete", "serving.kserve.io", "inferenceservices", True),
    ("inference_bridge", "get", "serving.kserve.io", "servingruntimes", True),
    ("inference_bridge", "create", "serving.kserve.io", "servingruntimes", True),
    ("inference_bridge", "patch", "serving.kserve.io", "servingruntimes", True),
    ("inference_bridge", "get", "networking.k8s.io", "networkpolicies", True),
    ("inference_bridge", "create", "networking.k8s.io", "networkpolicies", True),
    ("inference_bridge", "patch", "networking.k8s.io", "networkpolicies", True),
    ("inference_bridge", "delete", "networking.k8s.io", "networkpolicies", True),
    ("inference_bridge", "list", "", "pods", True),
    ("inference_bridge", "get", "", "pods", True),
    ("inference_bridge", "get", "", "pods/log", True),
    ("inference_bridge", "get", "metrics.k8s.io", "pods", True),
    # saving on Kubernetes (images/node_agent/client.py): the pod's node, that node's agent
    ("images", "get", "", "pods", True),
    ("images", "list", "", "pods", True),
    # the SSH gateway (ssh_gateway/directory.py): an instance's pod address
    ("ssh_gateway", "list", "", "pods", True),
]
# which pod's ServiceAccount each code runs under; the proxy and the save agent call nothing
COMPONENT_OF = {code: "hub" for code, *_ in CALLS}
SCANNED = ["spawner", "hub", "images", "features", "ssh_gateway", "training_bridge"]
SCANNED += ["inference_bridge", "gallery"]
# KubeSpawner's calls on paths the platform never enables (test_render checks they stay
# off): internal_ssl / services_enabled (a Secret and a Service per pod) and
# enable_user_namespaces (a namespace per user)
KUBESPAWNER_OFF = {"create_namespace"}
KUBESPAWNER_OFF_TEMPLATES = {"delete_namespaced_{kind}", "read_namespaced_{kind}"}
KUBESPAWNER_OFF_TEMPLATES |= {"create_namespaced_{kind}"}

VERBS = {
    "create": "create",
    "read": "get",
    "get": "get",
    "list": "list",
    "patch": "patch",
    "replace": "update",
    "delete": "delete",
    "delete_collection": "deletecollection",
}
RESOURCES = {
    "pod": "pods",
    "pod_log": "pods/log",
    "persistent_volume_claim": "persistentvolumeclaims",
    "service": "services",
    "job": "jobs",
    "network_policy": "networkpolicies",
    "event": "events",
    "endpoints": "endpoints",
    "ingress": "ingresses",
    "secret": "secrets",
}
METHOD = re.compile(
    r"^(create|read|list|patch|replace|delete_collection|delete|get)_namespaced_(\w+)$"
)
API_CLASSES = [k8s.CoreV1Api, k8s.BatchV1Api, k8s.NetworkingV1Api]


def api_group(method: str) -> str:
    for cls in API_CLASSES:
        if hasattr(cls, method):
            return {"CoreV1Api": "", "BatchV1Api": "batch"}.get(cls.__name__, "networking.k8s.io")
    raise AssertionError(f"no Kubernetes API has {method}")


def typed_call(method: str) -> tuple[str, str, str]:
    """(verb, group, resource) of a kubernetes_asyncio method such as read_namespaced_pod_log."""
    verb, resource = METHOD.match(method).groups()
    assert resource in RESOURCES, f"{method}: add its resource to RESOURCES"
    return VERBS[verb], api_group(method), RESOURCES[resource]


# --- the scan ------------------------------------------------------------------------------


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts)


def _resolve(node, module, functions, calls_by_name, enclosing, index):
    """A call argument's value: a constant, a module global, or (for a parameter of the
    enclosing function) each value its callers in the module pass."""
    if isinstance(node, ast.Constant):
        return {node.value}
    if isinstance(node, ast.Name) and hasattr(module, node.id):
        return {getattr(module, node.id)}
    if isinstance(node, ast.Name) and enclosing is not None:
        params = [a.arg for a in enclosing.args.args if a.arg != "self"]
        assert node.id in params, f"{module.__name__}: cannot resolve {node.id}"
        position = params.index(node.id)
        found = set()
        for call in calls_by_name.get(enclosing.name, []):
            found |= _resolve(call.args[position], module, functions, calls_by_name, None, 0)
        assert found, f"{module.__name__}: nobody calls {enclosing.name}"
        return found
    raise AssertionError(f"{module.__name__}: cannot resolve {ast.dump(node)}")


def scan_platform() -> set[tuple[str, str, str, str]]:
    """(code, verb, group, resource) of every Kubernetes API call in the platform's sources."""
    found = set()
    for folder in SCANNED:
        for path in sorted((REPO / folder).rglob("*.py")):
            text = path.read_text()
            if "_namespaced_" not in text:
                continue
            tree = ast.parse(text)
            calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
            named = {}
            for call in calls:
                func = call.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                named.setdefault(name, []).append(call)
            parents = {}
            for fn in ast.walk(tree):
                if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                    for inner in ast.walk(fn):
                        parents.setdefault(id(inner), fn)
            module = None
            for call in calls:
                # a method called, or handed to a helper that calls it with the arguments
                # that follow it (the job runner's _create(method, *args))
                uses = [(call.func, call.args)] + [
                    (arg, call.args[i + 1 :]) for i, arg in enumerate(call.args)
                ]
                for func, args in uses:
                    if not isinstance(func, ast.Attribute):
                        continue
                    method = func.attr
                    if method.endswith("_namespaced_custom_object"):
                        module = module or importlib.import_module(_module_name(path))
                        enclosing = parents.get(id(call))
                        verb = VERBS[method.split("_namespaced_")[0]]
                        groups = _resolve(args[0], module, None, named, enclosing, 0)
                        plurals = _resolve(args[3], module, None, named, enclosing, 3)
                        found |= {(folder, verb, g, p) for g in groups for p in plurals}
                    elif METHOD.match(method):
                        found.add((folder, *typed_call(method)))
    return found


def scan_kubespawner() -> set[tuple[str, str, str, str]]:
    """KubeSpawner's calls: its API methods, and the kinds its reflectors list and watch."""
    found = set()
    source = inspect.getsource(kubespawner.spawner)
    for method in set(re.findall(r"self\.api\.(\w+)\(", source)) | set(
        re.findall(r"\bapi\.(create_namespace)\(", source)
    ):
        if method in KUBESPAWNER_OFF:
            continue
        found.add(("kubespawner", *typed_call(method)))
    templates = set(re.findall(r'getattr\(self\.api, f"(\w+\{kind\})"\)', source))
    assert templates == KUBESPAWNER_OFF_TEMPLATES, "KubeSpawner calls something new by kind"
    for kind in re.findall(r'kind="(\w+)",\s*reflector_class=', source):
        found |= {("kubespawner", "list", "", kind), ("kubespawner", "watch", "", kind)}
    return found


# --- RBAC, as the authorizer evaluates it ----------------------------------------------------


def bound_rules(objects: list[dict], account: str, namespace: str) -> list[dict]:
    """The rules of every Role and ClusterRole bound to the ServiceAccount (namespaced:
    RoleBindings; cluster-wide: ClusterRoleBindings)."""
    roles = {(o["kind"], o["metadata"]["name"]): o for o in objects if o["kind"].endswith("Role")}
    rules = []
    for binding in (o for o in objects if o["kind"].endswith("RoleBinding")):
        subject = {"kind": "ServiceAccount", "name": account, "namespace": namespace}
        if subject in binding["subjects"]:
            role = roles[(binding["roleRef"]["kind"], binding["roleRef"]["name"])]
            rules += [
                {**rule, "_cluster": binding["kind"] == "ClusterRoleBinding"}
                for rule in role["rules"]
            ]
    return rules


def allows(rules, verb, group, resource, namespaced=True, name=None) -> bool:
    for rule in rules:
        if not namespaced and not rule["_cluster"]:
            continue  # a RoleBinding grants nothing cluster-scoped
        if group not in rule["apiGroups"] and "*" not in rule["apiGroups"]:
            continue
        base = resource.split("/")[0]
        wildcard = f"{base}/*" if "/" in resource else None
        if not {resource, "*", wildcard} & set(rule["resources"]):
            continue
        if verb not in rule["verbs"] and "*" not in rule["verbs"]:
            continue
        if rule.get("resourceNames") and name not in rule["resourceNames"]:
            continue
        return True
    return False


def test_the_rule_matcher_reads_rules_as_the_authorizer_does():
    rules = [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"], "_cluster": False},
        {
            "apiGroups": ["apps"],
            "resources": ["deployments/*"],
            "verbs": ["*"],
            "resourceNames": ["hub"],
            "_cluster": False,
        },
    ]
    assert allows(rules, "get", "", "pods")
    assert not allows(rules, "get", "", "pods/log")  # a subresource is named on its own
    assert not allows(rules, "list", "", "pods")
    assert not allows(rules, "get", "apps", "pods")
    assert not allows(rules, "get", "", "pods", namespaced=False)
    assert allows(rules, "patch", "apps", "deployments/scale", name="hub")
    assert not allows(rules, "patch", "apps", "deployments/scale", name="other")


def test_every_call_is_allowed_and_nothing_else(tmp_path):
    objects = bundle(tmp_path, hub={"image": HUB_IMAGE})
    namespace = "workbench"
    assert not [o for o in objects if o["kind"].startswith("Cluster")]  # all namespaced
    hub = find(objects, "Deployment", "hub")["spec"]["template"]["spec"]
    rules = bound_rules(objects, hub["serviceAccountName"], namespace)
    for code, verb, group, resource, namespaced in CALLS:
        assert allows(rules, verb, group, resource, namespaced), (code, verb, group, resource)
    # the reverse: every verb of every rule is needed by some call (no wildcard, no extra)
    needed = {(verb, group, resource) for _, verb, group, resource, _ in CALLS}
    for rule in rules:
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"], rule
        assert not rule.get("resourceNames")
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    assert (verb, group, resource) in needed, f"{verb} {group}/{resource}"
    # the proxy and the save agent: no token, no binding
    for name, kind in (("proxy", "Deployment"), ("workbench-save-agent", "DaemonSet")):
        if kind == "DaemonSet":
            objects = bundle(
                tmp_path,
                hub={"image": HUB_IMAGE},
                registry={"url": "r.example.com"},
                saveAgent={"enabled": True, "image": "r.example.com/agent:1"},
            )
        pod = find(objects, kind, name)["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False
        account = pod.get("serviceAccountName", "default")
        assert bound_rules(objects, account, namespace) == []


def test_the_table_holds_every_call_the_code_makes():
    table = {(code, verb, group, resource) for code, verb, group, resource, _ in CALLS}
    scanned = scan_platform() | scan_kubespawner()
    missing = sorted(scanned - table)
    assert not missing, f"calls missing from CALLS: {missing}"
    stale = sorted(table - scanned)
    assert not stale, f"rows of CALLS no code makes: {stale}"
    assert set(COMPONENT_OF.values()) == {"hub"}
