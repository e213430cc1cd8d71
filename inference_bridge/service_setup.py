"""How online services join the platform API: their runner, their manager and its loop."""

from __future__ import annotations

import logging
import os
from urllib.parse import urlparse

from jupyterhub.utils import url_path_join
from tornado import web
from tornado.httpserver import HTTPServer

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

    url = settings.engine_url()
    return EngineServiceRunner(url, pids_limit=config.pids_limit)


def service_prefix() -> str:
    return os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/workbench/")


def public_url(settings) -> str:
    """Where callers reach services: <the platform's public URL>/services/workbench/inference."""
    origin = (settings.subdomain_host or settings.bind_url).rstrip("/")
    return origin + url_path_join(service_prefix(), "inference")


class InferenceEndpoint:
    """The calling path of services on a port of its own (the inference port): the router's
    handler alone, with no proxy in front of it."""

    def __init__(self, manager: ServiceManager, port: int, address: str):
        self.manager = manager
        self.port = port
        self.address = address
        self.server: HTTPServer | None = None

    @property
    def url(self) -> str:
        host = self.address if self.address not in ("", "0.0.0.0", "::") else "127.0.0.1"
        return f"http://{host}:{self.port}" + url_path_join(service_prefix(), "inference")

    def start(self) -> None:
        from .router import ROUTE, InferenceHandler

        route = url_path_join(service_prefix(), ROUTE.lstrip("/"))
        app = web.Application([(route, InferenceHandler)], service_manager=self.manager)
        # no proxy in front: X-Forwarded-* headers are the caller's own, not to be trusted
        self.server = HTTPServer(app, xheaders=False)
        self.server.listen(self.port, self.address)
        log.info("services answer on %s too", self.url)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


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
    if config.port:
        address = urlparse(settings.bind_url).hostname or ""
        endpoint = InferenceEndpoint(manager, config.port, address)
        manager.direct_url = endpoint.url
        platform.on_start.append(endpoint.start)
        platform.on_stop.append(endpoint.stop)
    platform.on_stop.append(manager.close)
