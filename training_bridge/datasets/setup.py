"""How the datasets feature joins the platform API: its blob store, its service, its versions
and tasks."""

from __future__ import annotations

from inference_bridge.model_setup import make_copier

from .blobs import BlobStore
from .datasets import DatasetService
from .tasks import setup_tasks
from .versions import setup_versions


def setup(platform) -> None:
    """platform["dataset_service"] (also platform["datasets"]); then the versions and the
    labelling tasks, which build on it."""
    settings = platform.settings
    config = settings.feature("datasets")
    data_root = settings.data_path / "datasets"
    job_service = platform.get("job_service")
    service = DatasetService(
        db=platform.db,
        settings=config,
        data_root=data_root,
        blobs=BlobStore(config.store_url or (data_root / "blobs").as_uri()),
        workspaces=platform.get("workspaces"),
        hub=platform.hub,
        policy=platform.policy,
        copier=make_copier(platform),
        image_checker=getattr(job_service, "image_checker", None),
        versions=lambda: platform.get("dataset_versions"),
    )
    platform["dataset_service"] = service
    platform["datasets"] = service
    platform.on_start.append(service.start)
    platform.on_stop.append(service.close)
    setup_versions(platform)
    setup_tasks(platform)
