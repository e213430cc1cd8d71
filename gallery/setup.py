"""How the gallery joins the platform API: its blob store, the kinds' context and its service."""

from __future__ import annotations

from inference_bridge.model_setup import make_copier
from training_bridge.datasets.blobs import BlobStore

from .kinds import KindContext
from .service import GalleryService


def setup(platform) -> None:
    """platform["gallery_service"]: its start-up sweep removes blobs no asset references."""
    settings = platform.settings
    config = settings.feature("gallery")
    root = settings.data_path / "gallery"
    blobs = BlobStore(config.blob_url or (root / "blobs").as_uri())
    job_service = platform.get("job_service")
    copier = make_copier(platform)
    ctx = KindContext(
        db=platform.db,
        hub=platform.hub,
        policy=platform.policy,
        settings=config,
        blobs=blobs,
        platform=platform,
        copier=copier,
        image_checker=getattr(job_service, "image_checker", None),
        work_dir=root / "work",
    )
    service = GalleryService(ctx, workspaces=platform.get("workspaces"))
    platform["gallery_service"] = service
    platform.on_start.append(service.start)
    platform.on_stop.append(service.close)
    if copier is not None:
        platform.on_stop.append(copier.close)
