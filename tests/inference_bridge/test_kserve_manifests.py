"""A service's KServe objects (InferenceService, ServingRuntime, NetworkPolicy), without a cluster.

No cluster runs here. The InferenceService and the ServingRuntimes are validated against
KServe's own CRD schemas (the openAPIV3Schema of serving.kserve.io_inferenceservices.yaml and
serving.kserve.io_servingruntimes.yaml, vendored beside this module with the parts the
platform never renders removed, see its "trimmed" note), strictly: an unknown field is an
error, as the API server makes it with fieldValidation=Strict. The NetworkPolicy and every
object's metadata are validated against the official Kubernetes schemas of the newest version
the installed kubernetes-validate ships. What KServe and Knative do with the predictor is
replayed from their sources: the runtime's container merged with the predictor's model fields,
the PodSpec fields Knative accepts without feature flags, the variables it reserves, the
kubelet's $(NAME) expansion; so the serving container's environment is compared with what the
engine gives a replica of the same version.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import jsonschema
import kubernetes_validate
import kubernetes_validate.utils
import pytest
import yaml

from inference_bridge import kserve_manifests as km
from inference_bridge.kserve_manifests import PredictorPlan, ServicePlan
from inference_bridge.service_runners import ReplicaPlan
from spawner.kube_manifests import PLATFORM_PODS, make_instance_network_policy

K8S_VERSION = kubernetes_validate.utils.latest_version()
NAMESPACE = "workbench-services"
PVC = "workbench-models"
SCHEMAS = json.loads((Path(__file__).parent / "kserve_crd_schemas.json").read_text())
LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
SIGNATURE = {
    "inputs": [{"name": "x $(HOME) $$", "datatype": "FP32", "shape": [-1, 4]}],
    "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 3]}],
}
# Knative Serving's PodSpecMask (pkg/apis/serving/fieldmask.go): the PodSpec fields a
# revision may set with no feature flag (automountServiceAccountToken only as false)
KNATIVE_POD_FIELDS = {
    "serviceAccountName",
    "containers",
    "volumes",
    "imagePullSecrets",
    "enableServiceLinks",
    "automountServiceAccountToken",
}
# KServe's ComponentExtensionSpec and PredictorSpec fields that are not PodSpec fields
KSERVE_COMPONENT_FIELDS = {
    "minReplicas",
    "maxReplicas",
    "scaleMetric",
    "scaleMetricType",
    "scaleTarget",
    "containerConcurrency",
    "timeout",
    "canaryTrafficPercent",
    "logger",
    "batcher",
    "labels",
    "annotations",
    "deploymentStrategy",
    "autoScaling",
    "model",
    "storageUris",
    "name",
}
# Knative's SecurityContextMask: the container securityContext fields it accepts
KNATIVE_SECURITY_FIELDS = {
    "capabilities",
    "readOnlyRootFilesystem",
    "runAsUser",
    "runAsGroup",
    "runAsNonRoot",
    "allowPrivilegeEscalation",
    "seccompProfile",
    "privileged",
}
KNATIVE_RESERVED_ENV = {"PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION"}


def strict(schema):
    """The schema with unknown fields refused wherever it lists an object's fields (as the
    API server does with fieldValidation=Strict), except where KServe keeps unknown ones."""
    if isinstance(schema, dict):
        out = {key: strict(value) for key, value in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(value) for value in schema]
    return schema


VALIDATORS = {
    kind: jsonschema.Draft202012Validator(strict(SCHEMAS[kind]))
    for kind in ("InferenceService", "ServingRuntime")
}


def validate_metadata(obj: dict):
    """The object's metadata as the API server checks every object's (name, labels,
    annotations), through a ConfigMap that carries it."""
    meta = obj["metadata"]
    holder = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}
    assert kubernetes_validate.validate(holder, K8S_VERSION, strict=True)
    assert len(meta["name"]) <= 63 and DNS_1035.match(meta["name"]), meta["name"]
    assert_valid_labels(meta.get("labels") or {})


def validate(obj: dict):
    """Validate one rendered object with the schema the cluster would use for it."""
    kind = obj["kind"]
    if kind in ("InferenceService", "ServingRuntime", "ClusterServingRuntime"):
        schema_kind = "InferenceService" if kind == "InferenceService" else "ServingRuntime"
        errors = sorted(VALIDATORS[schema_kind].iter_errors(obj), key=str)
        assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)
        group, _, version = obj["apiVersion"].partition("/")
        assert group == "serving.kserve.io"
        assert version == ("v1beta1" if kind == "InferenceService" else "v1alpha1")
        validate_metadata(obj)
    else:
        assert kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        assert_valid_labels(obj["metadata"].get("labels") or {})


def assert_valid_labels(labels: dict):
    for key, value in labels.items():
        prefix, _, name = key.rpartition("/")
        assert not prefix or (len(prefix) <= 253 and DNS_SUBDOMAIN.match(prefix)), key
        assert len(name) <= 63 and LABEL_NAME.match(name), key
        assert value == "" or (len(value) <= 63 and LABEL_NAME.match(value)), (key, value)


def predictor(model="mnist", version=1, **fields) -> PredictorPlan:
    values = dict(
        model=model,
        version=version,
        format="onnx",
        image_ref="registry.example.com/ai-workbench/python:3.11-cpu",
        cpu=1.5,
        memory=2 * 1024**3,
        min_replicas=1,
        max_replicas=3,
        target_in_flight=4,
        signature=SIGNATURE,
    )
    values.update(fields)
    return PredictorPlan(**values)


def service(*predictors: PredictorPlan, **fields) -> ServicePlan:
    values = dict(
        owner="Jane.Doe@Example.com",
        name="digits",
        predictors=predictors or (predictor(),),
        workspace="vision",
    )
    values.update(fields)
    return ServicePlan(**values)


def render(plan: ServicePlan, mode=km.SERVERLESS, **options) -> dict:
    isvc = km.make_inference_service(
        plan, namespace=NAMESPACE, models_pvc=PVC, deployment_mode=mode, **options
    )
    validate(isvc)
    return isvc


def kubelet_expand(text: str, env: dict) -> str:
    """The kubelet's $(NAME) expansion: defined names replaced, `$$` an escaped `$`."""

    def replace(match):
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return re.sub(r"\$\$|\$\(([^)]*)\)", replace, text)


def serving_container(isvc: dict, runtime: dict | None, mode: str) -> dict:
    """The serving container of the predictor's pods: for a model, KServe merges the
    predictor's model fields into the runtime's container (a strategic merge: env by name,
    the rest replaced); Knative sets PORT to the container's port in Serverless mode."""
    spec = isvc["spec"]["predictor"]
    if "containers" in spec:
        (container,) = copy.deepcopy(spec["containers"])
    else:
        (container,) = copy.deepcopy(runtime["spec"]["containers"])
        model = spec["model"]
        for key, value in model.items():
            if key in ("modelFormat", "runtime", "protocolVersion", "storageUri"):
                continue
            if key == "env":
                names = {e["name"] for e in value}
                container["env"] = [e for e in container.get("env", []) if e["name"] not in names]
                container["env"] += copy.deepcopy(value)
            else:
                container[key] = copy.deepcopy(value)
    if mode == km.SERVERLESS:
        assert "PORT" not in {e["name"] for e in container.get("env", [])}
        container.setdefault("env", []).append(
            {"name": "PORT", "value": str(container["ports"][0]["containerPort"])}
        )
    return container


def environment(container: dict) -> dict:
    env: dict[str, str] = {}
    for entry in container.get("env", []):
        env[entry["name"]] = kubelet_expand(entry["value"], env)
    return env


# --- InferenceService ---------------------------------------------------------------------


@pytest.mark.parametrize("mode", km.DEPLOYMENT_MODES)
@pytest.mark.parametrize("model_format", km.RUNTIME_FORMATS)
def test_each_format_runs_on_its_runtime_with_the_versions_files(model_format, mode):
    p = predictor(format=model_format, version=3, predictor="predictor.py:Model")
    plan = service(p)

    isvc = render(plan, mode)

    assert isvc["kind"] == "InferenceService"
    assert isvc["metadata"]["namespace"] == NAMESPACE
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == mode
    spec = isvc["spec"]["predictor"]
    model = spec["model"]
    assert model["modelFormat"] == {"name": model_format}
    assert model["runtime"] == f"workbench-{model_format}"
    assert model["storageUri"] == f"pvc://{PVC}/Jane.Doe@Example.com/mnist/3"
    assert model["image"] == p.image_ref
    assert model["protocolVersion"] == "v2"
    resources = model["resources"]
    assert resources["limits"] == resources["requests"] == {"cpu": "1500m", "memory": "2147483648"}
    assert "canaryTrafficPercent" not in spec
    assert (spec["minReplicas"], spec["maxReplicas"]) == (1, 3)
    if mode == km.SERVERLESS:
        assert (spec["scaleMetric"], spec["scaleTarget"]) == ("concurrency", 4)
    else:
        # KServe's HPA refuses the concurrency metric: RawDeployment scales on CPU
        assert "scaleMetric" not in spec and "scaleTarget" not in spec

    runtime = km.make_serving_runtime(
        model_format,
        image="registry.example.com/ai-workbench/python:3.11-cpu",
        namespace=NAMESPACE,
        deployment_mode=mode,
    )
    assert runtime["metadata"]["name"] == model["runtime"]
    container = serving_container(isvc, runtime, mode)
    assert container["name"] == "kserve-container"
    assert container["image"] == p.image_ref
    assert container["command"] == ["python", "-m", "workbench.serving"]
    assert "--model_dir=/mnt/models" in container["args"]
    env = environment(container)
    assert json.loads(env["WORKBENCH_MODEL"]) == {
        "name": "mnist",
        "version": "3",
        "format": model_format,
        "predictor": "predictor.py:Model",
        "signature": SIGNATURE,  # `$(HOME)` and `$$` arrive as written
    }
    # the same variables as a replica of the same version on the engine
    engine = ReplicaPlan(
        owner=plan.owner,
        service=plan.name,
        service_object="x",
        predictor="mnist:3",
        replica="x-1",
        image_ref=p.image_ref,
        model_dir="/data/models/jane/mnist/3",
        model_env=env["WORKBENCH_MODEL"],
        cpu=p.cpu,
        memory=p.memory,
    )
    assert env == engine.env()


@pytest.mark.parametrize("mode", km.DEPLOYMENT_MODES)
def test_a_custom_image_runs_as_the_predictors_own_container(mode):
    p = predictor(
        format="image",
        image_ref="registry.example.com/saved/alice/server:v1",
        command="exec python serve.py --port $PORT",
        gpu=1,
        cpu=4,
        gpu_type="t4",
    )

    isvc = render(service(p), mode, gpu_node_label="example.com/gpu")

    spec = isvc["spec"]["predictor"]
    assert "model" not in spec  # no files, no runtime
    (container,) = spec["containers"]
    assert container["name"] == "kserve-container"
    assert container["image"] == p.image_ref
    assert container["ports"] == [{"containerPort": 8080, "protocol": "TCP"}]
    assert container["resources"]["limits"] == {
        "cpu": "4",
        "memory": "2147483648",
        "nvidia.com/gpu": "1",
    }
    assert container["resources"]["requests"] == container["resources"]["limits"]
    assert spec["nodeSelector"] == {"example.com/gpu": "t4"}
    served = serving_container(isvc, None, mode)
    env = environment(served)
    assert env["PORT"] == "8080"
    assert env["WORKBENCH_MODEL_DIR"] == "/mnt/models"
    assert [kubelet_expand(a, env) for a in served["command"]] == [
        "sh",
        "-c",
        "exec python serve.py --port $PORT",  # for the shell, not for the kubelet
    ]


@pytest.mark.parametrize("mode", km.DEPLOYMENT_MODES)
@pytest.mark.parametrize("namespace", [NAMESPACE, None], ids=["namespaced", "cluster"])
def test_serving_runtimes(mode, namespace):
    for model_format in km.RUNTIME_FORMATS:
        runtime = km.make_serving_runtime(
            model_format,
            image="registry.example.com/ai-workbench/python:3.11-cpu",
            namespace=namespace,
            deployment_mode=mode,
            labels={"team": "ml"},
        )
        validate(runtime)

        assert runtime["kind"] == ("ServingRuntime" if namespace else "ClusterServingRuntime")
        assert runtime["metadata"].get("namespace") == namespace
        assert runtime["metadata"]["name"] == f"workbench-{model_format}"
        assert runtime["metadata"]["labels"]["team"] == "ml"
        spec = runtime["spec"]
        # only InferenceServices that name it: never picked for someone else's model
        assert spec["supportedModelFormats"] == [{"name": model_format, "autoSelect": False}]
        assert spec["protocolVersions"] == ["v1", "v2"]
        (container,) = spec["containers"]
        assert container["command"] == ["python", "-m", "workbench.serving"]
        assert container["args"] == ["--model_dir=/mnt/models", "--http_port=8080"]
        assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": 8080}
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env["WORKBENCH_MODEL_DIR"] == "/mnt/models"
        # Knative reserves PORT (and sets it); RawDeployment pods get it from the runtime
        assert env.get("PORT") == (None if mode == km.SERVERLESS else "8080")
        security = container["securityContext"]
        assert security["runAsNonRoot"] is True and security["runAsUser"] == 1000
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"] == {"drop": ["ALL"]}

    with pytest.raises(ValueError):
        km.make_serving_runtime("image", image="x")


def test_main_prints_the_cluster_runtimes(capsys):
    km.main(["--image", "registry.example.com/ai-workbench/python:3.11-cpu"])

    runtimes = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [r["metadata"]["name"] for r in runtimes] == [
        f"workbench-{f}" for f in km.RUNTIME_FORMATS
    ]
    for runtime in runtimes:
        assert runtime["kind"] == "ClusterServingRuntime"
        validate(runtime)


def test_serverless_predictor_sets_only_what_knative_accepts():
    """Knative validates the predictor's pod: no feature-flagged PodSpec field, a container
    securityContext it accepts, no variable it reserves."""
    for p in (predictor(), predictor(format="image", command="serve")):
        spec = render(service(p))["spec"]["predictor"]
        pod_fields = set(spec) - KSERVE_COMPONENT_FIELDS
        assert pod_fields <= KNATIVE_POD_FIELDS, pod_fields
        assert spec["automountServiceAccountToken"] is False
        containers = spec.get("containers") or [
            km.make_serving_runtime(p.format, image="x")["spec"]["containers"][0]
        ]
        for container in containers:
            assert set(container["securityContext"]) <= KNATIVE_SECURITY_FIELDS
            assert not {e["name"] for e in container["env"]} & KNATIVE_RESERVED_ENV
        assert not {e["name"] for e in spec.get("model", {}).get("env", [])} & (
            KNATIVE_RESERVED_ENV
        )


def test_labels_annotations_and_visibility():
    plan = service(predictor(owner="bob", model="Digits.Classifier_v2", version=7))

    isvc = render(plan, labels={"team": "vision ml"})

    meta = isvc["metadata"]
    labels = meta["labels"]
    assert labels["ai-workbench.service"] == meta["name"]
    assert labels["ai-workbench.user"] != plan.owner  # made a valid label value
    assert labels["ai-workbench.service-name"] == "digits"
    assert labels["ai-workbench.workspace"] == "vision"
    assert labels["team"] != "vision ml" and LABEL_NAME.match(labels["team"])
    # no external ingress: only the router calls the service, in either mode
    assert labels["networking.knative.dev/visibility"] == "cluster-local"
    assert labels["networking.kserve.io/visibility"] == "cluster-local"
    # the exact names are annotations
    assert meta["annotations"]["ai-workbench.user"] == "Jane.Doe@Example.com"
    assert meta["annotations"]["ai-workbench.service-name"] == "digits"

    spec = isvc["spec"]["predictor"]
    assert spec["labels"] == {
        "ai-workbench.model-owner": "bob",
        "ai-workbench.model": "Digits.Classifier_v2",
        "ai-workbench.model-version": "7",
    }
    assert spec["annotations"] == {"ai-workbench.predictor": "Digits.Classifier_v2:7"}
    assert spec["model"]["storageUri"] == f"pvc://{PVC}/bob/Digits.Classifier_v2/7"

    # the instances' NetworkPolicy does not select the predictor's pods
    instances = make_instance_network_policy(NAMESPACE, PLATFORM_PODS)
    (expression,) = instances["spec"]["podSelector"]["matchExpressions"]
    assert expression["key"] not in {**labels, **spec["labels"]}

    public = render(plan, cluster_local=False)
    assert "networking.knative.dev/visibility" not in public["metadata"]["labels"]


# --- canary, promotion, rollback, scaling ----------------------------------------------------


def test_canary_is_the_latest_spec_with_its_share_then_promoted_or_rolled_back():
    stable = predictor(version=1, weight=90)
    canary = predictor(version=2, weight=10, image_ref="registry.example.com/x:2", max_replicas=2)
    alone = render(service(predictor(version=1)))

    split = render(service(stable, canary))

    spec = split["spec"]["predictor"]
    assert spec["canaryTrafficPercent"] == 10
    assert spec["model"]["storageUri"] == f"pvc://{PVC}/Jane.Doe@Example.com/mnist/2"
    assert spec["model"]["image"] == "registry.example.com/x:2"
    assert spec["maxReplicas"] == 2
    assert spec["labels"]["ai-workbench.model-version"] == "2"

    # new weights change canaryTrafficPercent and nothing else: no new revision starts
    half = render(
        service(
            predictor(version=1, weight=50),
            predictor(version=2, weight=50, image_ref="registry.example.com/x:2", max_replicas=2),
        )
    )
    assert half["spec"]["predictor"]["canaryTrafficPercent"] == 50
    assert {**half["spec"]["predictor"], "canaryTrafficPercent": 10} == spec
    assert half["metadata"] == split["metadata"]

    # promotion: the canary's spec without canaryTrafficPercent (all traffic to it)
    promoted = render(km.promoted(service(stable, canary)))
    expected = copy.deepcopy(spec)
    del expected["canaryTrafficPercent"]
    assert promoted["spec"]["predictor"] == expected

    # rollback: the stable version's spec, exactly as when it ran alone
    rolled_back = render(km.rolled_back(service(stable, canary)))
    assert rolled_back == alone

    # a dark launch: the canary runs and gets nothing yet
    dark = render(service(predictor(version=1, weight=100), predictor(version=2, weight=0)))
    assert dark["spec"]["predictor"]["canaryTrafficPercent"] == 0


def test_raw_deployment_has_no_canary_and_no_scale_to_zero():
    with pytest.raises(ValueError, match="Serverless"):
        render(
            service(predictor(version=1, weight=90), predictor(version=2, weight=10)),
            km.RAW_DEPLOYMENT,
        )

    spec = render(service(predictor(min_replicas=0), scale_to_zero_seconds=300), km.RAW_DEPLOYMENT)[
        "spec"
    ]["predictor"]
    assert spec["minReplicas"] == 1
    assert "autoscaling.knative.dev/scale-to-zero-pod-retention-period" not in spec["annotations"]


def test_scale_to_zero_needs_min_zero_and_a_retention_time():
    retention = "autoscaling.knative.dev/scale-to-zero-pod-retention-period"

    to_zero = render(service(predictor(min_replicas=0), scale_to_zero_seconds=299.5))
    spec = to_zero["spec"]["predictor"]
    assert spec["minReplicas"] == 0
    assert spec["annotations"][retention] == "300s"

    never = render(service(predictor(min_replicas=0), scale_to_zero_seconds=0))
    assert never["spec"]["predictor"]["minReplicas"] == 1
    kept = render(service(predictor(min_replicas=2), scale_to_zero_seconds=60))
    assert kept["spec"]["predictor"]["minReplicas"] == 2
    assert retention not in kept["spec"]["predictor"]["annotations"]


def test_request_timeout_is_set_when_asked():
    assert render(service(), timeout_seconds=90)["spec"]["predictor"]["timeout"] == 90
    assert "timeout" not in render(service())["spec"]["predictor"]


@pytest.mark.parametrize(
    "plan, message",
    [
        (service(predictor(weight=90)), "add up to 100"),
        (
            service(
                predictor(version=1, weight=50),
                predictor(version=2, weight=30),
                predictor(version=3, weight=20),
            ),
            "two",
        ),
        (service(predictor(version=1, weight=50), predictor(version=1, weight=50)), "another"),
        (service(predictor(format="keras")), "unknown format"),
        (service(predictor(min_replicas=3, max_replicas=2)), "replicas"),
        (service(predictor(max_replicas=0, min_replicas=0)), "replicas"),
        (service(predictor(target_in_flight=0)), "target_in_flight"),
        (service(predictor(image_ref="")), "image"),
        (service(predictor(model="..")), "folder"),
        (service(predictor(), owner="../etc"), "folder"),
    ],
    ids=[
        "weights",
        "three",
        "same-version",
        "format",
        "min-over-max",
        "no-replicas",
        "target",
        "image",
        "model-dotdot",
        "owner-path",
    ],
)
def test_plans_kserve_could_not_run_are_refused(plan, message):
    with pytest.raises(ValueError, match=message):
        render(plan)


def test_an_unknown_field_fails_validation():
    """The strict schema is not a formality: a misspelt field is caught."""
    isvc = render(service())
    isvc["spec"]["predictor"]["scaleMetrics"] = "concurrency"
    with pytest.raises(AssertionError, match="scaleMetrics"):
        validate(isvc)
    isvc = render(service())
    isvc["spec"]["predictor"]["scaleMetric"] = "in-flight"
    with pytest.raises(AssertionError, match="in-flight"):
        validate(isvc)


# --- names --------------------------------------------------------------------------------


def test_names_are_dns_labels_within_knatives_and_kserves_limits():
    owners = ["alice", "Jane.Doe@Example.com", "0-day", "x" * 80, "ünïcode"]
    services = ["digits", "a" * 39, "b-c"]
    names = set()
    for owner in owners:
        for name in services:
            isvc = km.isvc_name(owner, name, NAMESPACE)
            assert DNS_1035.match(isvc), isvc
            # Knative's revision names and KServe's RawDeployment host label: <= 63
            assert len(f"{isvc}-predictor-00001") <= 63
            assert len(f"{isvc}-predictor-{NAMESPACE}") <= 63
            assert len(km.network_policy_name(isvc)) <= 63
            assert isvc == km.isvc_name(owner, name, NAMESPACE)  # stable
            names.add(isvc)
    assert len(names) == len(owners) * len(services)
    # joining names is ambiguous; the hash is not
    assert km.isvc_name("a-b", "c") != km.isvc_name("a", "b-c")
    assert km.isvc_name("alice", "digits").startswith("alice-digits-")
    with pytest.raises(ValueError):
        km.isvc_name("alice", "digits", "n" * 45)


# --- NetworkPolicy ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", km.DEPLOYMENT_MODES)
def test_network_policy_lets_only_the_router_in(mode):
    plan = service()
    isvc = render(plan, mode)

    policy = km.make_network_policy(
        plan, namespace=NAMESPACE, router_namespace="workbench", deployment_mode=mode
    )

    validate(policy)
    assert policy["metadata"]["name"] == km.network_policy_name(isvc["metadata"]["name"])
    assert policy["metadata"]["labels"]["ai-workbench.service"] == isvc["metadata"]["name"]
    spec = policy["spec"]
    # the predictor's pods, as KServe labels them
    assert spec["podSelector"] == {
        "matchLabels": {"serving.kserve.io/inferenceservice": isvc["metadata"]["name"]}
    }
    assert spec["policyTypes"] == ["Ingress"]  # egress stays open
    (rule,) = spec["ingress"]
    router, *others = rule["from"]
    assert router == {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "workbench"}},
        "podSelector": {"matchLabels": {"component": "hub"}},
    }
    if mode == km.RAW_DEPLOYMENT:
        assert others == []
        assert rule["ports"] == [{"protocol": "TCP", "port": 8080}]
    else:
        # Knative's activator, autoscaler and gateway stand between the router and the pods
        assert [o["namespaceSelector"]["matchLabels"] for o in others] == [
            {"kubernetes.io/metadata.name": "knative-serving"},
            {"kubernetes.io/metadata.name": "istio-system"},
        ]
        assert all(set(o) == {"namespaceSelector"} for o in others)
