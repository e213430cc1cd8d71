"""The platform API service's process: `python -m hub.service.app`, started by JupyterHub."""

from __future__ import annotations

import asyncio
import logging
import os
from urllib.parse import urlparse

from jupyterhub.services.auth import HubOAuthCallbackHandler
from jupyterhub.utils import url_path_join
from tornado import web
from tornado.httpserver import HTTPServer

from images.catalog import load_catalog
from spawner.engine import EngineUnavailable, find_engine
from spawner.flavors import load_flavors
from spawner.options import InstancePolicy

from ..settings import WorkbenchSettings, load_settings
from . import handlers
from .hubapi import HubAPI
from .instances import InstanceManager

log = logging.getLogger("workbench.service")


def make_policy(settings: WorkbenchSettings) -> InstancePolicy:
    """The instance policy from the settings, exactly as the spawner builds it."""
    sc = settings.spawner_config()
    return InstancePolicy(
        catalog=load_catalog(sc["catalog_path"] or None, registry=sc["image_registry"]),
        flavors=load_flavors(sc["flavors_path"] or None),
        default_image=sc["default_image"],
        default_flavor=sc["default_flavor"],
        storage_min_gib=sc["storage_min_gib"],
        storage_max_gib=sc["storage_max_gib"],
        storage_default_gib=sc["storage_default_gib"],
        allowed_flavors=tuple(sc["allowed_flavors"]),
    )


class EngineProbe:
    """Answers whether the container engine is up and which images it holds."""

    def __init__(self, settings: WorkbenchSettings):
        self.settings = settings

    def _engine(self):
        return find_engine(self.settings.docker_host, podman_socket=self.settings.podman_socket)

    async def check(self):
        """HTTP 503 with what to do if the engine does not answer (docker backend only)."""
        if self.settings.backend != "docker":
            return
        try:
            await asyncio.to_thread(self._engine)
        except EngineUnavailable as e:
            raise web.HTTPError(503, str(e)) from None

    async def images(self) -> set[str] | None:
        """References of the images present on the engine; None if it cannot be asked."""
        if self.settings.backend != "docker":
            return None

        def list_refs():
            import docker

            client = docker.DockerClient(base_url=self._engine().url, timeout=10)
            return {tag for image in client.images.list() for tag in image.tags}

        try:
            return await asyncio.to_thread(list_refs)
        except Exception as e:  # noqa: BLE001 - engine down: status "unknown"
            log.warning("cannot list images on the engine: %s", e)
            return None


def make_app(settings: WorkbenchSettings) -> web.Application:
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/workbench/")
    api_prefix = url_path_join(prefix, "api")
    hub = HubAPI(os.environ["JUPYTERHUB_API_URL"], os.environ["JUPYTERHUB_API_TOKEN"])
    policy = make_policy(settings)
    probe = EngineProbe(settings)
    manager = InstanceManager(hub, policy, start_timeout=settings.start_timeout)
    user = r"(?P<user>[^/]+)"
    name = r"(?P<name>[^/]+)"
    routes = [
        (prefix, handlers.HealthHandler),
        (url_path_join(prefix, "oauth_callback"), HubOAuthCallbackHandler),
        (api_prefix + "/?", handlers.RootHandler),
        (url_path_join(api_prefix, "flavors"), handlers.FlavorsHandler),
        (url_path_join(api_prefix, "images"), handlers.ImagesHandler),
        (url_path_join(api_prefix, "users", user, "instances"), handlers.InstancesHandler),
        (url_path_join(api_prefix, "users", user, "instances", name), handlers.InstanceHandler),
        (
            url_path_join(api_prefix, "users", user, "instances", name, r"(?P<action>start|stop)"),
            handlers.InstanceActionHandler,
        ),
    ]
    return web.Application(
        routes,
        cookie_secret=os.urandom(32),
        instance_manager=manager,
        policy=policy,
        api_prefix=api_prefix,
        engine_check=probe.check,
        image_checker=probe.images,
    )


async def main():
    logging.basicConfig(
        level=logging.INFO, format="[%(levelname)1.1s %(asctime)s workbench-api] %(message)s"
    )
    settings, _ = load_settings()
    app = make_app(settings)
    url = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", f"http://127.0.0.1:{settings.service_port}"))
    server = HTTPServer(app, xheaders=True)
    server.listen(url.port, url.hostname)
    log.info("platform API listening on %s", url.geturl())
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
