"""The server extension: configuration and routes under <base_url>/workbench/."""

from __future__ import annotations

import os

from jupyter_server.extension.application import ExtensionApp
from traitlets import Float, Unicode, default

from . import datasets, deploy, experiments, gallery, handlers, tensorboard, training
from .platform import PlatformClient


class WorkbenchLabApp(ExtensionApp):
    """Answers the JupyterLab panel: this instance's model, usage and actions.

    It calls the platform API server-side with the instance's own JupyterHub token
    ($JUPYTERHUB_API_TOKEN), which never reaches the browser.
    """

    name = "workbench_lab"
    load_other_extensions = True

    platform_url = Unicode(
        help="""URL of the platform API (…/services/workbench/api) as reached from this server.

        Default: $WORKBENCH_API_URL (the Docker/Podman spawner sets it), else derived from
        $JUPYTERHUB_API_URL by replacing its /hub/api with /services/workbench/api.
        Example: c.WorkbenchLabApp.platform_url = "http://hub:8090/services/workbench/api"
        """,
    ).tag(config=True)

    @default("platform_url")
    def _default_platform_url(self):
        url = os.environ.get("WORKBENCH_API_URL", "")
        if url:
            return url
        hub_api = os.environ.get("JUPYTERHUB_API_URL", "").rstrip("/")
        if hub_api.endswith("/hub/api"):
            return hub_api[: -len("/hub/api")] + "/services/workbench/api"
        return ""

    api_token = Unicode(
        help="""Token for the platform API. Default: $JUPYTERHUB_API_TOKEN (this server's own
        token; its 'server' role carries access:services!service=workbench).""",
    ).tag(config=True)

    @default("api_token")
    def _default_api_token(self):
        return os.environ.get("JUPYTERHUB_API_TOKEN", "")

    user = Unicode(
        help="Owner of this instance. Default: $JUPYTERHUB_USER.",
    ).tag(config=True)

    @default("user")
    def _default_user(self):
        return os.environ.get("JUPYTERHUB_USER", "")

    instance = Unicode(
        help="Name of this instance. Default: $JUPYTERHUB_SERVER_NAME.",
    ).tag(config=True)

    @default("instance")
    def _default_instance(self):
        return os.environ.get("JUPYTERHUB_SERVER_NAME", "")

    request_timeout = Float(
        10.0,
        help="""Seconds to wait for the platform API before answering 502 to the panel.
        Default 10. Example: c.WorkbenchLabApp.request_timeout = 20""",
    ).tag(config=True)

    restart_grace = Float(
        0.5,
        help="""Seconds to wait for the platform to refuse a flavor switch or stop before
        answering 202: once accepted, the platform stops this server, so the answer must
        leave before (the panel also takes no answer as accepted). Default 0.5.""",
    ).tag(config=True)

    storage_path = Unicode(
        "/home/jovyan/work",
        help="""The instance's persistent storage, whose use the panel shows (statvfs).
        Default /home/jovyan/work.""",
    ).tag(config=True)

    cgroup_root = Unicode(
        "/sys/fs/cgroup",
        help="""Where this container's cgroup files are (v2 or v1 controllers) for CPU and
        memory use. Default /sys/fs/cgroup.""",
    ).tag(config=True)

    def initialize_settings(self):
        self.platform = PlatformClient(
            self.platform_url,
            self.api_token,
            self.user,
            self.instance,
            timeout=self.request_timeout,
        )
        self.last_reading = None
        self.last_usage = None
        self.log.info(
            "workbench_lab: instance %s/%s, platform API %s",
            self.user,
            self.instance,
            self.platform_url or "(unknown)",
        )

    async def stop_extension(self):
        await self.platform.aclose()

    def initialize_handlers(self):
        self.handlers.extend(
            [
                (r"/workbench/instance", handlers.InstanceHandler),
                (r"/workbench/usage", handlers.UsageHandler),
                (r"/workbench/flavors", handlers.FlavorsHandler),
                (r"/workbench/flavor", handlers.FlavorHandler),
                (r"/workbench/stop", handlers.StopHandler),
                (r"/workbench/save", handlers.SaveHandler),
                (r"/workbench/ssh", handlers.SSHHandler),
                *training.routes(),
                *deploy.routes(),
                *datasets.routes(),
                *experiments.routes(),
                *gallery.routes(),
                *tensorboard.routes(),
            ]
        )
