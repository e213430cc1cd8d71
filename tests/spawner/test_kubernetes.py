"""The Kubernetes spawner: the pods and PVCs it asks for, checked without a cluster.

No Kubernetes cluster runs here. The spawner (KubeSpawner underneath) is built in
KubeSpawner's mock mode (`_mock=True`: stand-in hub) against a kubeconfig naming an
unreachable API server, and every call it makes to the Kubernetes API goes to an
in-process double (FakeKube) that records it, keeps the created pods and PVCs, plays
the pod and event watches, and marks a created pod Running. So start(), stop() and
delete_forever() run their real code paths, and the tests see exactly the objects a
cluster would have been sent.

Those manifests are validated against the official Kubernetes JSON schemas of the
newest version the installed kubernetes-validate ships (strict: unknown fields are
errors). The schemas do not check names or labels, so those are checked here against
Kubernetes' own syntax rules.
"""

from __future__ import annotations

import asyncio
import copy
import re
import uuid
from types import SimpleNamespace

import kubernetes_validate
import kubernetes_validate.utils
import pytest
import yaml
from jupyterhub import orm
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.rest import ApiException
from kubernetes_asyncio.config import kube_config
from kubespawner import clients as kube_clients
from tornado import web
from traitlets import TraitError
from traitlets.config import Config

from images.catalog import load_catalog
from spawner.flavors import load_flavors, parse_bytes
from spawner.kube_manifests import (
    GPU_RESOURCE,
    PLATFORM_PODS,
    RUNTIME_DIR,
    label_value,
    make_instance_network_policy,
    make_kube_overrides,
    make_labels,
)
from spawner.kubernetes import WorkbenchKubeSpawner
from spawner.options import InstanceSpec

K8S_VERSION = kubernetes_validate.utils.latest_version()
NAMESPACE = "workbench"
REGISTRY = "registry.example.com/"
WORK_DIR = "/home/jovyan/work"
POD_IP = "10.42.0.7"

CATALOG = load_catalog(registry=REGISTRY)
FLAVORS = load_flavors()
COMBINATIONS = [
    pytest.param(image, flavor, id=f"{image.name}-{flavor.name}")
    for image in CATALOG
    for flavor in FLAVORS.values()
]

# Kubernetes' syntax rules (k8s.io/apimachinery/pkg/util/validation)
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")  # max 63
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")  # max 63


def assert_valid_labels(labels: dict):
    for key, value in labels.items():
        prefix, _, name = key.rpartition("/")
        assert not prefix or (len(prefix) <= 253 and DNS_SUBDOMAIN.match(prefix)), key
        assert len(name) <= 63 and LABEL_NAME.match(name), key
        assert value == "" or (len(value) <= 63 and LABEL_NAME.match(value)), (key, value)


def cpus(quantity) -> float:
    """vCPUs of a Kubernetes CPU quantity (1, 0.5, "500m", "2")."""
    if isinstance(quantity, str) and quantity.endswith("m"):
        return int(quantity[:-1]) / 1000
    return float(quantity)


# --- the Kubernetes API double -------------------------------------------------------------


class FakeWatch:
    """Stands in for KubeSpawner's pod or event reflector (a watch of the namespace)."""

    def __init__(self, resources: dict):
        self.resources = resources
        self.first_load_future = asyncio.get_running_loop().create_future()
        self.first_load_future.set_result(None)

    @property
    def pods(self):
        return self.resources

    @property
    def events(self):
        return sorted(self.resources.values(), key=lambda e: e["lastTimestamp"])

    async def stop(self):
        pass


class FakeKube:
    """An in-process CoreV1Api double: records calls, keeps pods, PVCs and pod events.

    A created pod is Running (with an IP) at once, with a "Scheduled" and a "Started"
    event. Any API method not defined here fails the test.
    """

    def __init__(self, serialize):
        self.serialize = serialize
        self.calls: list[tuple[str, str, str]] = []  # (verb, kind, name)
        self.created: dict[str, list[dict]] = {"pod": [], "pvc": []}  # manifests as sent
        self.pods: dict[str, dict] = {}  # "namespace/name" -> pod, as the watch sees it
        self.pvcs: dict[str, dict] = {}
        self.events: dict[str, dict] = {}
        self._clock = 0

    def watches(self) -> dict:
        return {
            ("pods", NAMESPACE): FakeWatch(self.pods),
            ("events", NAMESPACE): FakeWatch(self.events),
        }

    def add_event(self, pod_name: str, pod_uid: str, reason: str, message: str):
        self._clock += 1
        uid = str(uuid.uuid4())
        self.events[uid] = {
            "metadata": {"uid": uid},
            "involvedObject": {"kind": "Pod", "name": pod_name, "uid": pod_uid},
            "type": "Normal",
            "reason": reason,
            "message": message,
            "lastTimestamp": f"2030-01-01T00:{self._clock // 60:02d}:{self._clock % 60:02d}Z",
            "eventTime": None,
        }

    async def create_namespaced_persistent_volume_claim(self, namespace, body):
        pvc = self.serialize(body)
        name = pvc["metadata"]["name"]
        self.calls.append(("create", "pvc", name))
        if name in self.pvcs:
            raise ApiException(status=409, reason="AlreadyExists")
        self.created["pvc"].append(copy.deepcopy(pvc))
        self.pvcs[name] = pvc
        return body

    async def read_namespaced_persistent_volume_claim(self, name, namespace):
        self.calls.append(("read", "pvc", name))
        if name not in self.pvcs:
            raise ApiException(status=404, reason="NotFound")
        return self.pvcs[name]

    async def delete_namespaced_persistent_volume_claim(self, name, namespace):
        self.calls.append(("delete", "pvc", name))
        if self.pvcs.pop(name, None) is None:
            raise ApiException(status=404, reason="NotFound")

    async def create_namespaced_pod(self, namespace, body):
        pod = self.serialize(body)
        name = pod["metadata"]["name"]
        self.calls.append(("create", "pod", name))
        key = f"{namespace}/{name}"
        if key in self.pods:
            raise ApiException(status=409, reason="AlreadyExists")
        self.created["pod"].append(copy.deepcopy(pod))
        pod["metadata"]["uid"] = uid = str(uuid.uuid4())
        pod["status"] = {
            "phase": "Running",
            "podIP": POD_IP,
            "containerStatuses": [{"ready": True}],
        }
        self.pods[key] = pod
        self.add_event(name, uid, "Scheduled", f"Successfully assigned {key} to node-1")
        self.add_event(name, uid, "Started", "Started container notebook")
        return body

    async def delete_namespaced_pod(self, name, namespace, body=None, grace_period_seconds=None):
        self.calls.append(("delete", "pod", name))
        if self.pods.pop(f"{namespace}/{name}", None) is None:
            raise ApiException(status=404, reason="NotFound")

    def __getattr__(self, name):
        raise AssertionError(f"unexpected Kubernetes API call: {name}")


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def unreachable_cluster(tmp_path_factory):
    """A kubeconfig for KubeSpawner to load, naming an API server nothing listens on."""
    path = tmp_path_factory.mktemp("kube") / "config"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "none", "cluster": {"server": "https://127.0.0.1:9"}}],
                "users": [{"name": "none", "user": {"token": "none"}}],
                "contexts": [
                    {
                        "name": "none",
                        "context": {"cluster": "none", "user": "none", "namespace": NAMESPACE},
                    }
                ],
                "current-context": "none",
            }
        )
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KUBECONFIG", str(path))
        # read from the environment at import: set where load_kube_config looks
        mp.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(path))
        kube_clients.load_config.cache_clear()
        yield
    kube_clients.load_config.cache_clear()


@pytest.fixture(scope="module")
async def api_client():
    """kubernetes_asyncio's serializer: model objects to the JSON the API server gets."""
    async with ApiClient() as client:
        yield client


@pytest.fixture
async def kube(api_client, monkeypatch):
    fake = FakeKube(api_client.sanitize_for_serialization)
    # KubeSpawner's watches are class-level singletons; these replace them for the test
    monkeypatch.setattr(WorkbenchKubeSpawner, "reflectors", fake.watches())
    return fake


@pytest.fixture
def make_spawner(kube):
    def make(user="alice", name="bert-finetune", options=None, **traits):
        options = dict(options or {})
        traits.setdefault("namespace", NAMESPACE)
        traits.setdefault("image_registry", REGISTRY)
        spawner = WorkbenchKubeSpawner(
            _mock=True,
            user=SimpleNamespace(name=user, id=1, url=f"/user/{user}/"),
            orm_spawner=orm.Spawner(name=name, user_options=options),
            **traits,
        )
        spawner.user_options = options  # as JupyterHub's spawn() sets both
        spawner.api = kube
        return spawner

    return make


def validate(manifest: dict):
    assert kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)


def notebook(pod: dict) -> dict:
    (container,) = [c for c in pod["spec"]["containers"] if c["name"] == "notebook"]
    return container


# --- every image x every flavor ------------------------------------------------------------


def test_shipped_flavors_cover_cpu_and_gpu():
    # the matrix below checks both branches only while both kinds ship
    assert any(f.gpu for f in FLAVORS.values()) and any(not f.gpu for f in FLAVORS.values())
    assert len(CATALOG) >= 1


@pytest.mark.parametrize(("image", "flavor"), COMBINATIONS)
async def test_start_sends_valid_manifests_with_flavor_and_storage(
    make_spawner, kube, api_client, image, flavor
):
    spawner = make_spawner(options={"image": image.name, "flavor": flavor.name, "storage_gib": 25})

    url = await spawner.start()

    assert url == f"http://{POD_IP}:8888"
    assert [verb_kind for *verb_kind, _ in kube.calls] == [["create", "pvc"], ["create", "pod"]]
    (pod,) = kube.created["pod"]
    (pvc,) = kube.created["pvc"]
    validate(pod)
    validate(pvc)

    # the direct builders give the same objects start() sent
    serialize = api_client.sanitize_for_serialization
    assert serialize(await spawner.get_pod_manifest()) == pod
    assert serialize(spawner.get_pvc_manifest()) == pvc

    container = notebook(pod)
    assert container["image"] == image.ref == CATALOG.get(image.name).ref
    assert container["image"].startswith(REGISTRY)
    limits, requests = container["resources"]["limits"], container["resources"]["requests"]
    assert cpus(limits["cpu"]) == flavor.cpu and cpus(requests["cpu"]) == flavor.cpu
    assert parse_bytes(limits["memory"]) == flavor.memory
    assert parse_bytes(requests["memory"]) == flavor.memory
    if flavor.gpu:
        assert limits[GPU_RESOURCE] == requests[GPU_RESOURCE] == str(flavor.gpu)
        assert pod["spec"]["nodeSelector"] == {"nvidia.com/gpu.product": flavor.gpu_type}
    else:
        assert GPU_RESOURCE not in limits and GPU_RESOURCE not in requests
        assert not pod["spec"].get("nodeSelector")

    # storage: its own claim of the asked size, mounted at the work directory
    assert pvc["spec"]["resources"]["requests"] == {"storage": "25Gi"}
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert pvc["metadata"]["name"] == spawner.pvc_name
    (volume,) = [v for v in pod["spec"]["volumes"] if "persistentVolumeClaim" in v]
    assert volume["persistentVolumeClaim"] == {"claimName": spawner.pvc_name}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts[WORK_DIR] == {"name": volume["name"], "mountPath": WORK_DIR}
    assert container["workingDir"] == WORK_DIR
    # jupyter_server's runtime files (its token, the cookie secret) in memory, outside home
    (runtime,) = [v for v in pod["spec"]["volumes"] if v["name"] == mounts[RUNTIME_DIR]["name"]]
    assert runtime["emptyDir"]["medium"] == "Memory"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["JUPYTER_RUNTIME_DIR"] == RUNTIME_DIR

    # never root
    assert container["securityContext"]["runAsUser"] == 1000
    assert container["securityContext"]["runAsGroup"] == 100
    assert container["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod["spec"]["securityContext"]["fsGroup"] == 100
    assert pod["spec"]["automountServiceAccountToken"] is False

    # names and labels Kubernetes accepts, tying the objects to user and instance
    assert len(pod["metadata"]["name"]) <= 63 and DNS_LABEL.match(pod["metadata"]["name"])
    assert len(pvc["metadata"]["name"]) <= 253 and DNS_SUBDOMAIN.match(pvc["metadata"]["name"])
    assert_valid_labels(pod["metadata"]["labels"])
    assert_valid_labels(pvc["metadata"]["labels"])
    assert {
        k: v for k, v in pod["metadata"]["labels"].items() if k.startswith("ai-workbench/")
    } == {
        "ai-workbench/user": "alice",
        "ai-workbench/instance": "bert-finetune",
        "ai-workbench/image": image.name,
        "ai-workbench/flavor": flavor.name,
        "ai-workbench/storage-gib": "25",
    }
    assert pvc["metadata"]["labels"]["ai-workbench/instance"] == "bert-finetune"


# --- behaviour -----------------------------------------------------------------------------


async def test_each_instance_has_its_own_pvc(make_spawner, kube):
    spawners = [
        make_spawner(user="alice", name="nb1"),
        make_spawner(user="alice", name="nb2"),
        make_spawner(user="bob", name="nb1"),
    ]
    for spawner in spawners:
        await spawner.start()

    names = [spawner.pvc_name for spawner in spawners]
    assert len(set(names)) == 3
    assert [pvc["metadata"]["name"] for pvc in kube.created["pvc"]] == names
    claims = [
        v["persistentVolumeClaim"]["claimName"]
        for pod in kube.created["pod"]
        for v in pod["spec"]["volumes"]
        if "persistentVolumeClaim" in v
    ]
    assert claims == names
    assert len({pod["metadata"]["name"] for pod in kube.created["pod"]}) == 3


@pytest.mark.parametrize(
    ("name", "options", "reason"),
    [
        ("nb1", {"flavor": "gpu.h100"}, "Unknown flavor 'gpu.h100'"),
        ("nb1", {"storage_gib": 0}, "out of range"),
        ("nb1", {"storage_gib": 101}, "out of range"),
        ("nb1", {"storage_gib": "lots"}, "not a whole number"),
        ("nb1", {"image": "matlab"}, "Unknown image 'matlab'"),
        ("nb1", {"gpus": 4}, "Unknown instance option"),
        ("Bad_Name", {}, "Invalid instance name"),
        ("-nb", {}, "Invalid instance name"),
    ],
    ids=[
        "unknown-flavor",
        "storage-0",
        "storage-101",
        "storage-text",
        "unknown-image",
        "unknown-option",
        "name-case",
        "name-dash",
    ],
)
async def test_invalid_options_refused_with_400_and_nothing_created(
    make_spawner, kube, name, options, reason
):
    spawner = make_spawner(name=name, options=options)

    with pytest.raises(web.HTTPError) as e:
        await spawner.start()

    assert e.value.status_code == 400
    assert reason in e.value.log_message
    assert kube.calls == [] and kube.pods == {} and kube.pvcs == {}
    events = [event async for event in spawner.progress()]
    assert events[-1]["progress"] == 100
    assert events[-1]["message"].startswith("Start failed: ") and reason in events[-1]["message"]


async def test_flavor_outside_allowed_flavors_refused(make_spawner, kube):
    spawner = make_spawner(options={"flavor": "gpu.a100"}, allowed_flavors=["cpu.small", "gpu.t4"])

    with pytest.raises(web.HTTPError) as e:
        await spawner.start()

    assert e.value.status_code == 400 and "gpu.a100" in e.value.log_message
    assert kube.calls == []


async def test_progress_shows_our_steps_then_only_this_pods_events(make_spawner, kube):
    spawner = make_spawner(options={"flavor": "gpu.t4", "storage_gib": 30})
    # an event of an earlier pod of the same name must not show
    kube.add_event(spawner.pod_name, "old-pod-uid", "Killing", "Stopping container notebook")

    await spawner.start()

    events = [event async for event in spawner.progress()]
    messages = [e["message"] for e in events]
    assert messages[0] == f"Image python ({CATALOG.get('python').ref})"
    assert messages[1] == "Flavor gpu.t4: 8 vCPU, 32 GiB, 1 x GPU Tesla-T4"
    assert messages[2] == f"Storage {spawner.pvc_name}: 30 GiB at {WORK_DIR} (created if missing)"
    assert messages[3] == f"Starting pod {spawner.pod_name} in namespace {NAMESPACE}"
    assert messages[4] == f"[Normal] Successfully assigned {NAMESPACE}/{spawner.pod_name} to node-1"
    assert messages[5] == "[Normal] Started container notebook"
    assert messages[6] == f"Pod {spawner.pod_name} is running; connecting to JupyterLab"
    assert len(messages) == 7
    percents = [e["progress"] for e in events]
    assert percents == sorted(percents) and percents[-1] == 100


async def test_restart_applies_new_flavor_keeps_storage_and_admin_settings(make_spawner, kube):
    config = Config()
    config.WorkbenchKubeSpawner.extra_labels = {"team": "ml"}
    config.WorkbenchKubeSpawner.node_selector = {"pool": "notebooks"}
    config.WorkbenchKubeSpawner.volumes = [
        {"name": "datasets", "persistentVolumeClaim": {"claimName": "datasets"}}
    ]
    config.WorkbenchKubeSpawner.volume_mounts = [{"name": "datasets", "mountPath": "/data"}]
    spawner = make_spawner(options={"flavor": "gpu.a100", "storage_gib": 40}, config=config)

    await spawner.start()
    await spawner.stop()
    spawner.user_options = spawner.orm_spawner.user_options = {"flavor": "cpu.small"}
    await spawner.start()

    first, second = kube.created["pod"]
    assert first["spec"]["nodeSelector"] == {
        "pool": "notebooks",
        "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB",
    }
    assert second["spec"]["nodeSelector"] == {"pool": "notebooks"}
    assert cpus(notebook(second)["resources"]["limits"]["cpu"]) == 1
    assert GPU_RESOURCE not in notebook(second)["resources"]["limits"]
    for pod in (first, second):
        validate(pod)
        assert pod["metadata"]["labels"]["team"] == "ml"
        assert {v["name"] for v in pod["spec"]["volumes"]} == {
            "datasets",
            "ai-workbench-work",
            "ai-workbench-runtime",
        }
        assert {m["mountPath"] for m in notebook(pod)["volumeMounts"]} == {
            "/data",
            WORK_DIR,
            RUNTIME_DIR,
        }
    # the claim is made once and kept; its size stays as first asked
    assert [c for c in kube.calls if c[1] == "pvc"] == [("create", "pvc", spawner.pvc_name)]
    assert kube.pvcs[spawner.pvc_name]["spec"]["resources"]["requests"]["storage"] == "40Gi"
    messages = [e["message"] for e in [e async for e in spawner.progress()]]
    assert any(m.startswith(f"Using storage {spawner.pvc_name}") for m in messages)


async def test_delete_forever_deletes_only_that_instances_pvc(make_spawner, kube):
    doomed, kept = make_spawner(name="nb1"), make_spawner(name="nb2")
    await doomed.start()
    await kept.start()
    await doomed.stop()

    await doomed.delete_forever()

    assert ("delete", "pvc", doomed.pvc_name) in kube.calls
    assert set(kube.pvcs) == {kept.pvc_name}


async def test_cpu_guarantee_fraction_lowers_the_request_not_the_limit(make_spawner, kube):
    spawner = make_spawner(options={"flavor": "cpu.large"}, cpu_guarantee_fraction=0.5)

    await spawner.start()

    resources = notebook(kube.created["pod"][0])["resources"]
    assert cpus(resources["limits"]["cpu"]) == 4 and cpus(resources["requests"]["cpu"]) == 2
    assert parse_bytes(resources["requests"]["memory"]) == FLAVORS["cpu.large"].memory


@pytest.mark.parametrize("fraction", [0, -0.5, 1.5])
async def test_cpu_guarantee_fraction_out_of_range_refused(make_spawner, fraction):
    with pytest.raises(TraitError):
        make_spawner(cpu_guarantee_fraction=fraction)


async def test_pvc_name_template_must_be_per_instance(make_spawner):
    with pytest.raises(TraitError, match="user_server"):
        make_spawner(pvc_name_template="claim-{username}")


@pytest.mark.parametrize(
    ("label", "selector"),
    [
        (
            "cloud.google.com/gke-accelerator",
            {"cloud.google.com/gke-accelerator": "Tesla-T4"},
        ),
        ("", None),
    ],
)
async def test_gpu_node_label_is_configurable(make_spawner, kube, label, selector):
    spawner = make_spawner(options={"flavor": "gpu.t4"}, gpu_node_label=label)

    await spawner.start()

    pod = kube.created["pod"][0]
    validate(pod)
    assert pod["spec"].get("nodeSelector") == selector
    assert notebook(pod)["resources"]["limits"][GPU_RESOURCE] == "1"


async def test_user_names_are_made_valid_labels(make_spawner, kube):
    spawner = make_spawner(user="Jane.Doe@Example.com", name="nb1")

    await spawner.start()

    pod, pvc = kube.created["pod"][0], kube.created["pvc"][0]
    validate(pod)
    validate(pvc)
    assert DNS_LABEL.match(pod["metadata"]["name"]) and DNS_SUBDOMAIN.match(pvc["metadata"]["name"])
    assert_valid_labels(pod["metadata"]["labels"])
    assert_valid_labels(pvc["metadata"]["labels"])
    assert pod["metadata"]["labels"]["ai-workbench/user"] == label_value("Jane.Doe@Example.com")
    assert label_value("Jane.Doe@Example.com") != label_value("jane.doe@example.com")
    # the raw name stays readable where Kubernetes allows any text
    assert pod["metadata"]["annotations"]["hub.jupyter.org/username"] == "Jane.Doe@Example.com"


@pytest.mark.parametrize(
    "value", ["alice", "a" * 63, "a" * 64, "Jane Doe", "-x-", "", "ünïcode", "a--b", "x_y.z"]
)
def test_label_value_always_valid(value):
    result = label_value(value)
    assert result == "" or (len(result) <= 63 and LABEL_NAME.match(result))
    if len(value) <= 63 and LABEL_NAME.match(value) and "--" not in value:
        assert result == value


def test_overrides_for_a_gpu_flavor():
    flavor = FLAVORS["gpu.t4"]
    spec = InstanceSpec(image="python", flavor="gpu.t4", storage_gib=7)
    overrides = make_kube_overrides(
        owner="alice",
        instance="nb1",
        spec=spec,
        image=CATALOG.get("python"),
        flavor=flavor,
        work_dir="/work/{odd}",
        pvc_name="claim-1",
        gpu_node_label="example.com/gpu",
        cpu_guarantee_fraction=0.1,
    )
    assert overrides["cpu_limit"] == 8 and overrides["cpu_guarantee"] == 0.8
    assert overrides["mem_limit"] == overrides["mem_guarantee"] == 32 * 1024**3
    assert overrides["extra_resource_limits"] == {GPU_RESOURCE: "1"}
    assert overrides["extra_resource_guarantees"] == {GPU_RESOURCE: "1"}
    assert overrides["node_selector"] == {"example.com/gpu": "Tesla-T4"}
    assert overrides["storage_capacity"] == "7Gi"
    # KubeSpawner expands {fields} in volume specs: literal braces are escaped
    mount = overrides["volume_mounts"]["ai-workbench-work"]
    assert mount["mountPath"] == "/work/{{odd}}"
    assert overrides["working_dir"] == "/work/{odd}"


async def test_spawn_form_is_the_workbench_form(make_spawner):
    spawner = make_spawner()

    form = await spawner.get_options_form()

    assert 'name="flavor"' in form and 'name="storage_gib"' in form
    # no engine to ask on Kubernetes: every catalog image can be picked
    assert "not built" not in form
    assert all(f'value="{name}"' in form for name in FLAVORS)


async def test_rename_refused(make_spawner):
    with pytest.raises(web.HTTPError) as e:
        await make_spawner().rename("bert-finetune", "other")
    assert e.value.status_code == 400


def test_instances_network_policy_admits_only_the_platform():
    """Instances reach no other instance: the policy selects every instance pod (by the
    user label each has) and admits only the hub's and proxy's pods; egress stays open so
    the hub API and mirrors are reached. Validated against the schema (no cluster here)."""
    policy = make_instance_network_policy(NAMESPACE, PLATFORM_PODS)
    validate(policy)
    selector = policy["spec"]["podSelector"]["matchExpressions"]
    labels = make_labels(
        "alice", "nb1", InstanceSpec(image="python", flavor="cpu.small", storage_gib=5)
    )
    assert all(e["operator"] == "Exists" and e["key"] in labels for e in selector)
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    sources = [peer["podSelector"]["matchLabels"] for peer in rule["from"]]
    assert sources == [{"component": "hub"}, {"component": "proxy"}]
    # an instance pod matches none of the admitted sources
    assert not any(all(labels.get(k) == v for k, v in src.items()) for src in sources)


@pytest.mark.parametrize(
    ("traits", "expected"),
    [
        # the default: the platform API on the hub's host as pods reach it
        ({}, "http://hub:8090/services/workbench/api"),
        (
            {"hub_connect_url": "http://jupyterhub.jhub.svc:8081"},
            "http://jupyterhub.jhub.svc:8090/services/workbench/api",
        ),
        (
            {"workbench_api_url": "http://{hub_host}:9000/services/workbench/api"},
            "http://hub:9000/services/workbench/api",
        ),
        ({"workbench_api_url": "http://api.example:80/x"}, "http://api.example:80/x"),
        # the admin's environment entry wins; empty: not set
        ({"environment": {"WORKBENCH_API_URL": "http://mine/api"}}, "http://mine/api"),
        ({"workbench_api_url": ""}, None),
    ],
)
async def test_pods_get_the_platform_api_url(make_spawner, kube, traits, expected):
    """$WORKBENCH_API_URL tells `import workbench` in the pod's kernels (and the panel) where
    the platform API is inside the cluster."""
    traits.setdefault("hub_connect_url", "http://hub:8081")
    spawner = make_spawner(**traits)
    await spawner.start()
    (pod,) = kube.created["pod"]
    env = {e["name"]: e.get("value") for e in notebook(pod)["env"]}
    assert env["JUPYTERHUB_API_URL"].startswith(traits["hub_connect_url"] + "/")
    assert env.get("WORKBENCH_API_URL") == expected


async def test_without_a_cluster_the_hub_works_and_a_start_says_what_to_do(monkeypatch, tmp_path):
    """A hub with backend kubernetes but neither a service account nor a kubeconfig (the
    hub image run outside a cluster): making a spawner, as every page does, works; polling
    says it is not running; stop and delete do nothing; a start answers 503 with what to do."""
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(tmp_path / "none"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    kube_clients.load_config.cache_clear()  # loaded for the other tests' cluster double
    try:
        spawner = WorkbenchKubeSpawner(
            _mock=True,
            user=SimpleNamespace(name="alice", id=1, url="/user/alice/"),
            orm_spawner=orm.Spawner(name="one", user_options={}),
            namespace=NAMESPACE,
        )
        assert spawner.cluster_error
        assert await spawner.poll() == 0
        await spawner.stop()
        await spawner.delete_forever()
        with pytest.raises(web.HTTPError) as raised:
            await spawner.start()
        assert raised.value.status_code == 503
        assert "No Kubernetes cluster to start instances in" in raised.value.log_message
        assert "$KUBECONFIG" in raised.value.log_message
    finally:
        kube_clients.load_config.cache_clear()
