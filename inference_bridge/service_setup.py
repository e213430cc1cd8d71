"""How online services join the platform API: their runner, their manager and its loop."""

from __future__ import annotations

import logging
import os

from jupyterhub.utils import url_path_join

from .manager import ServiceManager

log = logging.getLogger("workbench.services")


def make_runner(platform, config):
    """The service runner of the platform's backend: the engine's containers (a
    ServiceRunner), or KServe on Kubernetes (a ManagedServiceRunner)."""
    settings = platform.settings
    if settings.backend == "kubernetes":
        from .service_kubernetes import KubernetesServiceRunner

        namespace = settings.kubernetes_namespace or "default"
        return KubernetesServiceRunner(
            namespace=namespace,
            models_pvc=config.kubernetes_models_pvc,
            deployment_mode=config.kubernetes_deployment_mode,
            router_namespace=config.kubernetes_router_namespace or namespace,
            router_pods=dict(config.kubernetes_router_pods) or None,
        )
    from .service_engine import EngineServiceRunner

    url = os.environ.get("WORKBENCH_ENGINE_URL") or settings.engine().url
    return EngineServiceRunner(url, pids_limit=config.pids_limit)


def public_url(settings) -> str:
    """Where callers reach services: <the platform's public URL>/services/workbench/inference."""
    origin = (settings.subdomain_host or settings.bind_url).rstrip("/")
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/workbench/")
    return origin + url_path_join(prefix, "inference")


def setup_services(platform) -> None:
    """platform["service_manager"]: its loop starts once the API listens and takes up the
    replicas a restart left running; at the API's stop it lets go of them (they go on)."""
    from features.usage.store import UsageRecorder

    settings = platform.settings
    config = settings.feature("inference")
    manager = ServiceManager(
        db=platform.db,
        hub=platform.hub,
        policy=platform.policy,
        config=config,
        runner=make_runner(platform, config),
        registry=platform.get("model_registry"),
        quotas=platform.get("quota_checker"),
        workspaces=platform.get("workspaces"),
        usage=UsageRecorder(platform.db),
        public_url=public_url(settings),
        prefix=settings.container_prefix,
    )
    platform["service_manager"] = manager
    platform.on_start.append(manager.startup)
    platform.on_stop.append(manager.close)
