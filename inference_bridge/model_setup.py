"""How the model registry joins the platform API: its folders, its copier and its start."""

from __future__ import annotations

from .model_files import ModelFolders
from .models import ModelRegistry


def make_copier(platform):
    """What copies from instances' storage on the platform's backend (None: none there)."""
    settings = platform.settings
    if settings.backend != "docker":
        return None
    from .storage_copy import EngineStorageCopier

    url = settings.engine_url()
    return EngineStorageCopier(url, settings.container_prefix)


def setup_models(platform) -> None:
    """platform["model_registry"]: registers versions from the jobs' folders and instances'
    storage; the service manager (set up after it) is asked before a version is deleted."""
    settings = platform.settings
    job_service = platform.get("job_service")
    registry = ModelRegistry(
        db=platform.db,
        hub=platform.hub,
        policy=platform.policy,
        config=settings.feature("inference"),
        folders=ModelFolders(settings.data_path / "models"),
        job_service=job_service,
        workspaces=platform.get("workspaces"),
        copier=make_copier(platform),
        image_checker=getattr(job_service, "image_checker", None),
        services=lambda: platform.get("service_manager"),
    )
    platform["model_registry"] = registry
    platform.on_start.append(registry.start)
    platform.on_stop.append(registry.close)
