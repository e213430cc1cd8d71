"""Who may connect to whom under the bundle's NetworkPolicies (and the services' own).

No cluster or network plugin runs here. A small evaluator reads the rendered policies as
the NetworkPolicy API defines them (a pod selected by no policy of a type is open for it;
otherwise a connection needs a rule whose peers, podSelector / namespaceSelector /
ipBlock, and ports, numbers or the destination's named ports, match), over the pods the
platform runs: the hub, the proxy, the save agent from the bundle; instances, job nodes and
service replicas with the labels their code gives them.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest

from inference_bridge import kserve_manifests as km
from spawner.kube_manifests import make_labels as instance_labels
from tests.deploy.bundle_helpers import HUB_IMAGE, bundle, find
from tests.inference_bridge.test_kserve_manifests import predictor, service
from tests.training_bridge.test_kubernetes import make_plan
from training_bridge.kube_manifests import make_labels as job_labels

NAMESPACE = "workbench"


@dataclass
class Pod:
    name: str
    namespace: str
    labels: dict
    ports: dict[str, int] = field(default_factory=dict)  # named container ports
    ip: str = "10.0.0.1"


EXTERNAL = Pod("a user's laptop", "", {}, ip="203.0.113.7")


def namespace_labels(name: str) -> dict:
    return {"kubernetes.io/metadata.name": name}  # set by the API server on every namespace


def selects(selector: dict, labels: dict) -> bool:
    if not all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values") or []
        present = key in labels
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
    return True


def peer_matches(peer: dict, other: Pod, policy_namespace: str) -> bool:
    if "ipBlock" in peer:
        block = peer["ipBlock"]
        address = ipaddress.ip_address(other.ip)
        if address not in ipaddress.ip_network(block["cidr"]):
            return False
        return not any(address in ipaddress.ip_network(c) for c in block.get("except") or [])
    if not other.namespace:
        return False  # outside the cluster: only ipBlocks name it
    if "namespaceSelector" in peer:
        if not selects(peer["namespaceSelector"], namespace_labels(other.namespace)):
            return False
    elif other.namespace != policy_namespace:
        return False
    return "podSelector" not in peer or selects(peer["podSelector"], other.labels)


def port_matches(ports: list[dict] | None, target: Pod, port: int) -> bool:
    if not ports:
        return True
    for entry in ports:
        if entry.get("protocol", "TCP") != "TCP":
            continue
        wanted = entry.get("port")
        if wanted is None:
            return True
        if isinstance(wanted, str):
            wanted = target.ports.get(wanted)
        if wanted == port or (wanted and wanted <= port <= entry.get("endPort", wanted)):
            return True
    return False


def _direction(policies, pod: Pod, kind: str, other: Pod, target: Pod, port: int) -> bool:
    applying = [
        p
        for p in policies
        if p["metadata"]["namespace"] == pod.namespace
        and selects(p["spec"]["podSelector"], pod.labels)
        and kind in p["spec"].get("policyTypes", ["Ingress"])
    ]
    if not applying:
        return True  # selected by no policy of this type: open
    key, peers = ("ingress", "from") if kind == "Ingress" else ("egress", "to")
    for policy in applying:
        for rule in policy["spec"].get(key) or []:
            if rule.get(peers) and not any(
                peer_matches(peer, other, policy["metadata"]["namespace"]) for peer in rule[peers]
            ):
                continue
            if port_matches(rule.get("ports"), target, port):
                return True
    return False


def can_connect(policies, source: Pod, target: Pod, port: int | str) -> bool:
    """Whether `source` may open a TCP connection to `target`'s port (a number or the name
    of one of its container ports)."""
    if isinstance(port, str):
        port = target.ports[port]
    egress = not source.namespace or _direction(policies, source, "Egress", target, target, port)
    return egress and _direction(policies, target, "Ingress", source, target, port)


def test_the_evaluator_reads_policies_as_the_api_defines_them():
    web = Pod("web", "a", {"app": "web"}, {"http": 8080})
    db = Pod("db", "a", {"app": "db"}, {"pg": 5432})
    other = Pod("x", "b", {"app": "web"})
    policies = [
        {
            "metadata": {"namespace": "a"},
            "spec": {
                "podSelector": {"matchLabels": {"app": "db"}},
                "ingress": [
                    {
                        "from": [{"podSelector": {"matchLabels": {"app": "web"}}}],
                        "ports": [{"port": "pg"}],
                    }
                ],
            },
        }
    ]
    assert can_connect(policies, web, db, 5432)
    assert not can_connect(policies, web, db, 22)  # not the named port
    assert not can_connect(policies, other, db, 5432)  # same labels, other namespace
    assert can_connect(policies, db, web, 8080)  # web is selected by no policy: open
    policies[0]["spec"]["ingress"][0]["from"] = [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "b"}}}
    ]
    assert can_connect(policies, other, db, 5432) and not can_connect(policies, web, db, 5432)
    policies[0]["spec"]["ingress"] = [{"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]
    assert can_connect(policies, EXTERNAL, db, 5432)


def pods_of(objects: list[dict], kind: str, name: str, ip: str) -> Pod:
    template = find(objects, kind, name)["spec"]["template"]
    ports = {
        p["name"]: p["containerPort"]
        for c in template["spec"]["containers"]
        for p in c.get("ports") or []
    }
    return Pod(name, NAMESPACE, template["metadata"]["labels"], ports, ip)


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    """The bundle's policies (save agent on), with every kind of pod the platform runs."""
    objects = bundle(
        tmp_path_factory.mktemp("bundle"),
        hub={"image": HUB_IMAGE},
        registry={"url": "r.example.com"},
        saveAgent={"enabled": True, "image": "r.example.com/agent:1"},
    )
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    spec = SimpleNamespace(image="pytorch", flavor="cpu.small", storage_gib=10)
    # KubeSpawner's own labels, then the platform's (spawner/kube_manifests.py)
    kubespawner = {"app": "jupyterhub", "component": "singleuser-server", "heritage": "jupyterhub"}
    plan = make_plan("pytorch", 2)
    serving = service(predictor())
    isvc = km.isvc_name(serving.owner, serving.name, NAMESPACE)
    pods = SimpleNamespace(
        hub=pods_of(objects, "Deployment", "hub", "10.0.0.2"),
        proxy=pods_of(objects, "Deployment", "proxy", "10.0.0.3"),
        agent=pods_of(objects, "DaemonSet", "workbench-save-agent", "10.0.0.4"),
        alice=Pod(
            "alice's instance",
            NAMESPACE,
            {**kubespawner, **instance_labels("alice", "nb1", spec)},
            {"notebook": 8888},
            "10.0.1.1",
        ),
        bob=Pod(
            "bob's instance",
            NAMESPACE,
            {**kubespawner, **instance_labels("bob", "nb2", spec)},
            {"notebook": 8888},
            "10.0.1.2",
        ),
        node0=Pod("job node 0", NAMESPACE, job_labels(plan, 0), {}, "10.0.2.1"),
        node1=Pod("job node 1", NAMESPACE, job_labels(plan, 0), {}, "10.0.2.2"),
        replica=Pod(
            "service replica",
            NAMESPACE,
            {km.ISVC_POD_LABEL: isvc, **km.make_version_labels(serving, serving.predictors[0])},
            {"http": 8080},
            "10.0.3.1",
        ),
        activator=Pod(
            "Knative's activator", "knative-serving", {"app": "activator"}, {}, "10.0.4.1"
        ),
    )
    return objects, policies, pods, serving


def test_instances_are_reached_only_by_the_platform(platform):
    _, policies, pods, _ = platform
    assert not can_connect(policies, pods.alice, pods.bob, 8888)
    assert not can_connect(policies, pods.bob, pods.alice, 8888)
    assert not can_connect(policies, pods.node0, pods.alice, 8888)
    assert not can_connect(policies, EXTERNAL, pods.alice, 8888)
    assert can_connect(policies, pods.proxy, pods.alice, 8888)  # users' browsers, through it
    assert can_connect(policies, pods.hub, pods.alice, 8888)
    assert can_connect(policies, pods.hub, pods.alice, 22)  # the SSH gateway's upstream


def test_the_hub_is_reached_by_the_proxy_instances_and_ssh_users(platform):
    _, policies, pods, _ = platform
    for port in ("http", "api"):
        assert can_connect(policies, pods.alice, pods.hub, port)  # the SDK, the panel
        assert can_connect(policies, pods.proxy, pods.hub, port)  # /hub/, /services/
        assert not can_connect(policies, EXTERNAL, pods.hub, port)
        assert not can_connect(policies, pods.node0, pods.hub, port)
        assert not can_connect(policies, pods.replica, pods.hub, port)
    assert can_connect(policies, EXTERNAL, pods.hub, "ssh")  # the gateway's Service
    assert not can_connect(policies, EXTERNAL, pods.hub, 5432)


def test_the_proxy_is_public_and_its_api_the_hubs(platform):
    _, policies, pods, _ = platform
    assert can_connect(policies, EXTERNAL, pods.proxy, "http")
    assert can_connect(policies, pods.hub, pods.proxy, "api")
    assert not can_connect(policies, EXTERNAL, pods.proxy, "api")
    assert not can_connect(policies, pods.alice, pods.proxy, "api")


def test_only_the_hub_reaches_the_save_agent(platform):
    _, policies, pods, _ = platform
    assert can_connect(policies, pods.hub, pods.agent, "http")
    for other in (pods.alice, pods.proxy, pods.node0, pods.replica, pods.activator, EXTERNAL):
        assert not can_connect(policies, other, pods.agent, "http"), other.name


def test_job_nodes_reach_each_other_and_nothing_else_reaches_them(platform):
    _, policies, pods, _ = platform
    assert can_connect(policies, pods.node0, pods.node1, 29500)  # the rendezvous
    assert can_connect(policies, pods.node1, pods.node0, 23456)
    for other in (pods.alice, pods.proxy, EXTERNAL):
        assert not can_connect(policies, other, pods.node0, 29500), other.name


@pytest.mark.parametrize("mode", km.DEPLOYMENT_MODES)
def test_service_replicas_are_reached_by_the_router_in_the_hub(platform, mode):
    """The service runner's own policy (inference_bridge), with the bundle's defaults."""
    _, policies, pods, serving = platform
    policy = km.make_network_policy(
        serving, namespace=NAMESPACE, router_namespace=NAMESPACE, deployment_mode=mode
    )
    policies = [*policies, policy]
    assert can_connect(policies, pods.hub, pods.replica, 8080)
    for other in (pods.alice, pods.proxy, pods.node0, EXTERNAL):
        assert not can_connect(policies, other, pods.replica, 8080), other.name
    assert can_connect(policies, pods.activator, pods.replica, 8080) == (mode == km.SERVERLESS)
