"""The platform API service: `python -m hub.service.app`, the routes of every feature in one app."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import Awaitable, Callable
from importlib import import_module
from urllib.parse import urlparse

from jupyterhub.services.auth import HubOAuthCallbackHandler
from jupyterhub.utils import url_path_join
from tornado import web
from tornado.httpserver import HTTPServer
from tornado.ioloop import PeriodicCallback

from spawner.engine import ping
from spawner.options import make_policy

from ..audit import AuditLog
from ..db import Database, database_url
from ..features import Feature, collect, load_features
from ..settings import WorkbenchSettings
from . import handlers
from .process import hub_api, service_main

log = logging.getLogger("workbench.service")


class EngineProbe:
    """Answers whether the hub's container engine is up and which images it holds."""

    def __init__(self, settings: WorkbenchSettings, url: str):
        self.settings = settings
        self.url = url  # the engine the hub chose (docker backend), from its environment
        self._api = None  # a docker.APIClient, made at first use

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

    async def present(self, refs: list[str]) -> set[str] | None:
        """Which of refs the engine holds; None if it cannot be asked.

        One inspect per reference: listing the engine's images costs seconds once it holds
        many (Podman sizes each one), and docker-py's images.list() inspects each on top."""
        if self.settings.backend != "docker" or not self.url:
            return None

        def check():
            import docker

            if self._api is None:
                self._api = docker.APIClient(base_url=self.url, timeout=10)
            found = set()
            for ref in refs:
                try:
                    self._api.inspect_image(ref)
                except docker.errors.NotFound:
                    continue
                found.add(ref)
            return found

        try:
            return await asyncio.to_thread(check)
        except Exception as e:  # noqa: BLE001 - engine down: status "unknown"
            log.warning("cannot ask the engine for images: %s", e)
            self._api = None
            return None


class Platform:
    """What the API service's features share (settings, database, the hub's API, the instance
    policy, the audit log) and the objects each feature's setup() adds for its handlers,
    which read them from the application's settings (`self.settings["image_service"]`)."""

    def __init__(self, settings: WorkbenchSettings, db: Database, hub, features):
        self.settings = settings
        self.db = db
        self.hub = hub
        self.features = features
        self.engine = EngineProbe(settings, os.environ.get("WORKBENCH_ENGINE_URL", ""))
        events = {name for f in features for name in f.audit_events}
        self.audit = AuditLog(db, settings.audit_retention_days, events=events)
        self.objects: dict = {}
        # what runs once the service listens, and at its stop (in reverse order)
        self.on_start: list[Callable[[], Awaitable | None]] = []
        self.on_stop: list[Callable[[], Awaitable | None]] = []

    @functools.cached_property
    def policy(self):
        """What instances may be made of (spawner/options.py); saved images come from
        whichever feature set `saved_images` before the policy was first needed."""
        return make_policy(
            **self.settings.spawner_config(), saved_images=self.objects.get("saved_images")
        )

    def __getitem__(self, key: str):
        return self.objects[key]

    def __setitem__(self, key: str, value):
        self.objects[key] = value

    def get(self, key: str, default=None):
        return self.objects.get(key, default)


# the kit's own handler modules; each feature names its own
KIT_HANDLERS = ("hub.service.handlers", "hub.audit.api", "hub.service.subdomains")


def routes_of(modules, prefix: str, api_prefix: str) -> list[tuple]:
    """Routes of handler modules: `default_handlers` below the API prefix, `default_pages`
    below the service's prefix."""
    routes = []
    for name in modules:
        module = import_module(name)
        for path, *rest in getattr(module, "default_pages", ()):
            routes.append((url_path_join(prefix, path), *rest))
        for path, *rest in getattr(module, "default_handlers", ()):
            routes.append((api_prefix + path, *rest))
    return routes


def make_app(
    settings: WorkbenchSettings, db: Database | None = None, features: tuple[Feature, ...] = ()
) -> web.Application:
    """The platform API's application with the routes and objects of every feature."""
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/workbench/")
    api_prefix = url_path_join(prefix, "api")
    features = features or load_features()
    hub = hub_api()
    if db is None:
        db = Database(database_url(settings))
    platform = Platform(settings, db, hub, features)
    for _feature, setup in collect(features, "setup"):
        setup(platform)
    routes = [
        (prefix, handlers.HealthHandler),
        (url_path_join(prefix, "oauth_callback"), HubOAuthCallbackHandler),
        (api_prefix + "/?", handlers.RootHandler),
        (
            url_path_join(api_prefix, "openapi.json"),
            handlers.OpenAPIHandler,
            {"description": handlers.load_openapi(prefix, features)},
        ),
        *routes_of(KIT_HANDLERS, prefix, api_prefix),
        *routes_of([m for f in features for m in f.handlers], prefix, api_prefix),
    ]
    return web.Application(
        routes,
        default_handler_class=handlers.NotFoundHandler,
        cookie_secret=os.urandom(32),
        api_prefix=api_prefix,
        policy=platform.policy,
        engine_check=platform.engine.check,
        image_checker=platform.engine.present,
        db=db,
        audit=platform.audit,
        workbench_settings=settings,
        platform=platform,
        features=features,
        **platform.objects,
    )


async def _call_all(hooks):
    for hook in hooks:
        result = hook()
        if asyncio.iscoroutine(result):
            await result


async def serve(settings: WorkbenchSettings, stop: asyncio.Event):
    """Serve the platform API until stop is set."""
    app = make_app(settings, Database(database_url(settings)))
    platform: Platform = app.settings["platform"]
    default_url = f"http://127.0.0.1:{settings.service_port}"
    url = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", default_url))
    # what features do before serving (a save a restart interrupted is cleaned up first)
    await _call_all(platform.on_start)
    server = HTTPServer(app, xheaders=True)
    # WORKBENCH_SERVICE_IP: all interfaces, where instances call the API directly
    server.listen(url.port, os.environ.get("WORKBENCH_SERVICE_IP") or url.hostname)
    log.info("platform API listening on %s", url.geturl())

    async def prune():
        await asyncio.to_thread(platform.audit.prune)

    pruner = PeriodicCallback(prune, 3600 * 1000)
    pruner.start()
    await prune()
    await stop.wait()
    log.info("platform API stopping")
    server.stop()
    pruner.stop()
    await _call_all(reversed(platform.on_stop))
    await platform.audit.flush()


def main():
    service_main("workbench-api", "hub.service.app", serve)


if __name__ == "__main__":
    main()
