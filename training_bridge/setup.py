"""How the jobs feature joins the platform API: its runner, its service and its loop."""

from __future__ import annotations

from spawner.instance_network import write_instance_files

from .files import JobFolders
from .service import JobService


def make_runner(platform, config):
    """The job runner of the platform's backend: the engine's containers, or Kubernetes."""
    settings = platform.settings
    if settings.backend == "kubernetes":
        from .kubernetes import KubernetesJobRunner

        return KubernetesJobRunner(namespace=settings.kubernetes_namespace or "default")
    from .engine import EngineJobRunner

    network = settings.instance_network()
    files = write_instance_files(network, settings.data_path / "instance-files")
    url = settings.engine_url()
    return EngineJobRunner(
        url,
        container_prefix=settings.container_prefix,
        isolate=config.isolate_jobs,
        files=files,
        pids_limit=config.pids_limit,
    )


def setup(platform) -> None:
    """The job service (its scheduler starts once the API listens, and takes up the runs a
    restart left active)."""
    from features.usage.store import UsageRecorder

    settings = platform.settings
    config = settings.feature("jobs")
    folders = JobFolders(settings.data_path / "jobs")
    runner = make_runner(platform, config)
    service = JobService(
        db=platform.db,
        hub=platform.hub,
        policy=platform.policy,
        settings=settings,
        job_settings=config,
        runner=runner,
        folders=folders,
        quotas=platform.get("quota_checker"),
        workspaces=platform.get("workspaces"),
        usage=UsageRecorder(platform.db),
        image_checker=getattr(runner, "image_present", None),
        environment=settings.instance_network().environment,
    )
    platform["job_service"] = service
    platform.on_start.append(service.start)
    platform.on_stop.append(service.close)
