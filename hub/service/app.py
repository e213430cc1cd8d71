"""The platform API service's process: `python -m hub.service.app`, started by JupyterHub."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from urllib.parse import urlparse

from jupyterhub.services.auth import HubOAuthCallbackHandler
from jupyterhub.utils import url_path_join
from tornado import web
from tornado.httpserver import HTTPServer
from tornado.ioloop import PeriodicCallback

from spawner.engine import ping
from spawner.options import make_policy

from ..audit import AuditLog
from ..db import Database, database_url, upgrade_when_ready
from ..live_options import LiveOptionsStore
from ..quotas import QuotaChecker
from ..saved_images import SavedImageStore
from ..settings import WorkbenchSettings, load_settings
from . import audit, handlers, lifeline, quotas, usage
from .bridge import bridge_routes
from .hubapi import HubAPI
from .images import image_routes, make_image_service
from .instances import InstanceManager
from .keys import key_routes
from .lifecycle import ExtendHandler, InstanceStatusHandler, Lifecycle
from .workspaces import WorkspaceService, workspace_routes

log = logging.getLogger("workbench.service")


class EngineProbe:
    """Answers whether the hub's container engine is up and which images it holds."""

    def __init__(self, settings: WorkbenchSettings, url: str):
        self.settings = settings
        self.url = url  # the engine the hub chose (docker backend), from its environment

    async def check(self):
        """HTTP 503 with what to do if the engine does not answer (docker backend only)."""
        if self.settings.backend != "docker" or not self.url:
            return
        if not await asyncio.to_thread(ping, self.url):
            raise web.HTTPError(
                503,
                f"The container engine at {self.url} does not answer. Start Podman's service "
                "or Docker (`make up` does), then try again.",
            )

    async def images(self) -> set[str] | None:
        """References of the images present on the engine; None if it cannot be asked."""
        if self.settings.backend != "docker" or not self.url:
            return None

        def list_refs():
            import docker

            client = docker.DockerClient(base_url=self.url, timeout=10)
            return {tag for image in client.images.list() for tag in image.tags}

        try:
            return await asyncio.to_thread(list_refs)
        except Exception as e:  # noqa: BLE001 - engine down: status "unknown"
            log.warning("cannot list images on the engine: %s", e)
            return None


def make_app(settings: WorkbenchSettings, db: Database | None = None) -> web.Application:
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/workbench/")
    api_prefix = url_path_join(prefix, "api")
    hub = HubAPI(os.environ["JUPYTERHUB_API_URL"], os.environ["JUPYTERHUB_API_TOKEN"])
    if db is None:
        db = Database(database_url(settings))
    saved_images = SavedImageStore(db)
    policy = make_policy(**settings.spawner_config(), saved_images=saved_images)
    probe = EngineProbe(settings, os.environ.get("WORKBENCH_ENGINE_URL", ""))
    manager = InstanceManager(hub, policy, start_timeout=settings.start_timeout)
    manager.lifecycle = Lifecycle(manager, settings)
    manager.quotas = QuotaChecker(db, policy, settings.default_quota())
    hub.live = LiveOptionsStore(db)
    spaces = WorkspaceService(db, manager, hub)
    manager.workspaces = spaces.is_member
    manager.quotas.workspace_servers = spaces.servers
    user = r"(?P<user>[^/]+)"
    name = r"(?P<name>[^/]+)"
    routes = [
        (prefix, handlers.HealthHandler),
        (url_path_join(prefix, "oauth_callback"), HubOAuthCallbackHandler),
        (api_prefix + "/?", handlers.RootHandler),
        (
            url_path_join(api_prefix, "openapi.json"),
            handlers.OpenAPIHandler,
            {"description": handlers.load_openapi(prefix)},
        ),
        (url_path_join(api_prefix, "flavors"), handlers.FlavorsHandler),
        *image_routes(api_prefix),
        (url_path_join(api_prefix, "users", user, "instances"), handlers.InstancesHandler),
        (url_path_join(api_prefix, "users", user, "instances", name), handlers.InstanceHandler),
        (
            url_path_join(api_prefix, "users", user, "instances", name, r"(?P<action>start|stop)"),
            handlers.InstanceActionHandler,
        ),
        *key_routes(prefix, api_prefix),
        *bridge_routes(prefix),
        (url_path_join(api_prefix, "users", user, "instances", name, "extend"), ExtendHandler),
        (
            url_path_join(api_prefix, "users", user, "instances", name, "status"),
            InstanceStatusHandler,
        ),
        (url_path_join(api_prefix, "quotas", "users", user), quotas.UserQuotaHandler),
        *workspace_routes(api_prefix),
        (url_path_join(api_prefix, "usage"), usage.UsageHandler),
        (url_path_join(prefix, "admin", "usage"), usage.UsagePageHandler),
        (url_path_join(api_prefix, "audit"), audit.AuditEventsHandler),
        (url_path_join(api_prefix, "audit", "verify"), audit.AuditVerifyHandler),
        (url_path_join(prefix, "admin", "audit"), audit.AuditPageHandler),
    ]
    return web.Application(
        routes,
        default_handler_class=handlers.NotFoundHandler,
        cookie_secret=os.urandom(32),
        instance_manager=manager,
        policy=policy,
        api_prefix=api_prefix,
        engine_check=probe.check,
        image_checker=probe.images,
        db=db,
        image_service=make_image_service(
            db=db,
            hub=hub,
            policy=policy,
            settings=settings,
            store=saved_images,
            engine_url=probe.url,
        ),
        audit=AuditLog(db, settings.audit_retention_days),
        workspaces=spaces,
        workbench_settings=settings,
    )


async def main():
    logging.basicConfig(
        level=logging.INFO, format="[%(levelname)1.1s %(asctime)s workbench-api] %(message)s"
    )
    settings, _ = load_settings()
    # ends with the hub that started it; ends a predecessor a hard-killed hub left behind
    stop = asyncio.Event()
    pid_file = settings.data_path / "workbench-api.pid"
    hub_watch = await lifeline.hold(pid_file, "hub.service.app", stop.set)
    db_url = database_url(settings)
    await asyncio.to_thread(upgrade_when_ready, db_url)
    app = make_app(settings, Database(db_url))
    # saves a restart interrupted: nothing half-made stays
    await app.settings["image_service"].cleanup_interrupted()
    default_url = f"http://127.0.0.1:{settings.service_port}"
    url = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", default_url))
    server = HTTPServer(app, xheaders=True)
    # WORKBENCH_SERVICE_IP: all interfaces, where instances call the API directly
    server.listen(url.port, os.environ.get("WORKBENCH_SERVICE_IP") or url.hostname)
    log.info("platform API listening on %s", url.geturl())
    # auto-stop and crash recovery
    app.settings["instance_manager"].lifecycle.start()
    audit_log = app.settings["audit"]

    async def prune():
        await asyncio.to_thread(audit_log.prune)

    pruner = PeriodicCallback(prune, 3600 * 1000)
    pruner.start()
    await prune()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("platform API stopping")
    hub_watch.cancel()
    server.stop()
    pruner.stop()
    await audit_log.flush()
    lifeline.release(pid_file)


if __name__ == "__main__":
    asyncio.run(main())
