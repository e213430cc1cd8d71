"""The objects the platform creates at run time, made from the bundle's own settings, are valid.

No cluster runs here. The bundle's settings file (its ConfigMap) is read back as the hub
reads it; the job and service runners are built from it as the platform API service builds
them (training_bridge/setup.py, inference_bridge/service_setup.py), and what they would
send is validated: TrainJobs round-trip through Kubeflow Trainer's published models
(kubeflow-trainer-api), InferenceServices and ServingRuntimes against KServe's CRD schemas
(vendored in tests/inference_bridge/), Jobs, Services and NetworkPolicies against
Kubernetes 1.37's. The volumes and pods they name are the bundle's.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from kubeflow_trainer_api import models as trainer_models

from hub.settings import load_settings
from images.catalog import load_catalog
from inference_bridge import kserve_manifests as km
from inference_bridge.service_setup import make_runner as make_service_runner
from tests.deploy.bundle_helpers import HUB_IMAGE, bundle, find, validate
from tests.inference_bridge.test_kserve_manifests import predictor, service
from tests.inference_bridge.test_kserve_manifests import validate as validate_kserve
from tests.training_bridge.test_kubernetes import make_plan
from training_bridge import kube_manifests as jobs_km
from training_bridge.setup import make_runner as make_job_runner

VALUES = {
    "hub": {"image": HUB_IMAGE},
    "registry": {"url": "registry.example.com:5000", "path": "team-ml"},
}


@pytest.fixture
def platform(tmp_path):
    """(manifests, the hub's settings as it reads them, the catalog in the bundle's registry)
    of a bundle in namespace "ml-platform"."""
    objects = bundle(tmp_path, namespace="ml-platform", **VALUES)
    path = tmp_path / "workbench.toml"
    path.write_text(find(objects, "ConfigMap", "hub")["data"]["workbench.toml"])
    settings, _ = load_settings(path)
    catalog = load_catalog(registry=settings.image_registry)
    return objects, settings, catalog


def claims(objects) -> set[str]:
    return {o["metadata"]["name"] for o in objects if o["kind"] == "PersistentVolumeClaim"}


def test_trainjobs_and_indexed_jobs_of_the_bundles_settings(platform):
    objects, settings, catalog = platform
    runner = make_job_runner(SimpleNamespace(settings=settings), settings.feature("jobs"))
    assert runner.namespace == "ml-platform"
    # the jobs' volume and every store a version mounts are volumes the bundle makes
    assert {runner.pvc_name, runner.store_claim("models"), runner.store_claim("datasets")} <= (
        claims(objects)
    )
    image = catalog.get("pytorch").ref
    assert image.startswith("registry.example.com:5000/team-ml/ai-workbench/")
    plan = make_plan("pytorch", 2, image_ref=image)
    trainjob = jobs_km.make_trainjob(
        plan,
        namespace=runner.namespace,
        pvc_name=runner.pvc_name,
        runtime=runner.trainer_runtime,
        restart=0,
        labels=runner.labels,
    )
    model = trainer_models.TrainerV1alpha1TrainJob.from_dict(trainjob)
    assert model.to_dict() == trainjob  # no field dropped or renamed by the published models
    assert trainjob["metadata"]["namespace"] == "ml-platform"
    assert trainjob["spec"]["trainer"]["image"] == image

    plan = make_plan("tensorflow", 2, image_ref=catalog.get("tensorflow").ref)
    options = dict(namespace=runner.namespace, restart=0, labels=runner.labels)
    job = jobs_km.make_job(plan, pvc_name=runner.pvc_name, **options)
    headless = jobs_km.make_service(plan, **options)
    for obj in (job, headless):
        validate(obj)
        assert obj["metadata"]["namespace"] == "ml-platform"
    volumes = job["spec"]["template"]["spec"]["volumes"]
    named = {
        v["persistentVolumeClaim"]["claimName"] for v in volumes if "persistentVolumeClaim" in v
    }
    # the bundle's volumes, and the instances' own that inputs come from
    assert named <= claims(objects) | {c.volume for c in plan.inputs}
    assert runner.pvc_name in named


@pytest.mark.parametrize("mode", km.DEPLOYMENT_MODES)
def test_inference_services_of_the_bundles_settings(platform, mode):
    objects, settings, catalog = platform
    config = settings.feature("inference")
    config.kubernetes_deployment_mode = mode
    runner = make_service_runner(SimpleNamespace(settings=settings), config)
    assert runner.namespace == "ml-platform"
    assert runner.models_pvc in claims(objects)
    image = catalog.get("python").ref
    plan = service(predictor(image_ref=image))
    isvc, policy = runner.render(plan)
    validate_kserve(isvc)
    validate_kserve(policy)
    assert isvc["metadata"]["namespace"] == "ml-platform"
    assert isvc["spec"]["predictor"]["model"]["storageUri"].startswith(
        f"pvc://{runner.models_pvc}/"
    )
    runtime = km.make_serving_runtime(
        "onnx",
        image=image,
        namespace=runner.namespace,
        deployment_mode=runner.deployment_mode,
        labels=runner.labels,
    )
    validate_kserve(runtime)
    assert runtime["spec"]["containers"][0]["image"] == image
    # the service's NetworkPolicy lets the router in: the bundle's hub pods, in its namespace
    hub_labels = find(objects, "Deployment", "hub")["spec"]["template"]["metadata"]["labels"]
    router = policy["spec"]["ingress"][0]["from"][0]
    assert router["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "ml-platform"
    }
    assert router["podSelector"]["matchLabels"].items() <= hub_labels.items()
