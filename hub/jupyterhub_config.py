"""JupyterHub configuration of ai-workbench, driven by the settings file (workbench.toml)."""

import functools
import os
import sys
from pathlib import Path

from traitlets.utils.importstring import import_item

from hub import rbac
from hub.audit.hub_requests import audit_hub_requests
from hub.auth import with_default_group
from hub.db import database_url
from hub.features import collect, load_features, load_reference
from hub.settings import load_settings, settings_file

c = get_config()  # noqa: F821 - provided by JupyterHub

settings_path = settings_file()
settings, extra_config = load_settings(settings_path)
data = settings.prepare_data_dir()
REPO = Path(__file__).resolve().parent.parent
# every installed feature (hub/features.py): its scopes, services and configuration
features = load_features()

# --- the hub -------------------------------------------------------------------------
c.JupyterHub.bind_url = settings.bind_url
c.JupyterHub.hub_ip = "0.0.0.0"  # instances call back from their containers
c.JupyterHub.hub_port = settings.hub_port
c.JupyterHub.hub_connect_ip = "127.0.0.1"  # the proxy and services; instances use hub_connect_url
c.JupyterHub.db_url = settings.effective_db_url
c.JupyterHub.cookie_secret_file = str(data / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(data / "jupyterhub.pid")
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{settings.proxy_api_port}"
c.ConfigurableHTTPProxy.pid_file = str(data / "proxy.pid")
c.JupyterHub.template_paths = [str(Path(__file__).parent / "templates")]
c.JupyterHub.default_url = "/hub/home"
# instances are named servers; the unnamed default server is not used
c.JupyterHub.allow_named_servers = True
c.JupyterHub.named_server_limit_per_user = settings.max_instances_per_user
# instances keep running while the hub restarts
c.JupyterHub.cleanup_servers = False
# each user's instances on a host of their own (alice.hub.example.com), so a page a user
# serves is not on the hub's origin; the platform API stays on the hub's host
# (hub/service/subdomains.py says why)
if settings.subdomain_host:
    from hub.service.subdomains import subdomain_hook

    c.JupyterHub.subdomain_host = settings.subdomain_host
    c.JupyterHub.subdomain_hook = subdomain_hook

# --- sign-in -------------------------------------------------------------------------
c.Authenticator.admin_users = set(settings.admin_users)
if settings.authenticator == "native":
    c.JupyterHub.authenticator_class = "hub.auth.WorkbenchAuthenticator"
    c.WorkbenchAuthenticator.initial_admin_password = settings.initial_admin_password
    c.WorkbenchAuthenticator.open_signup = settings.open_signup
    c.WorkbenchAuthenticator.password_hash_rounds = settings.password_hash_rounds
    c.WorkbenchAuthenticator.enable_signup = True
    c.WorkbenchAuthenticator.minimum_password_length = 8
    c.WorkbenchAuthenticator.check_common_password = True
    c.WorkbenchAuthenticator.allowed_failed_logins = 5
    c.WorkbenchAuthenticator.seconds_before_next_try = 60
    # every account that exists in the native authenticator may sign in
    c.Authenticator.allow_all = True
else:
    c.JupyterHub.authenticator_class = with_default_group(import_item(settings.authenticator))
# a deleted user's rows in the platform database go with the user (hub/deleted_users.py)
c.Authenticator.platform_db_url = database_url(settings)

# --- the platform API service ----------------------------------------------------------
c.JupyterHub.services = [
    {
        "name": "workbench",
        "url": f"http://127.0.0.1:{settings.service_port}",
        "command": [sys.executable, "-m", "hub.service.app"],
        "cwd": os.getcwd(),
        "environment": {
            "WORKBENCH_CONFIG": str(settings_path.resolve()) if settings_path else "",
            "PYTHONPATH": str(REPO),
        },
        "oauth_no_confirm": True,
        "display": False,
        # JupyterHub exits when the service does not answer in time (30 s by default); it
        # answers in about 5 s, but imports every feature first, which on a loaded machine
        # has taken over 30 s
        "timeout": 120,
        # what the service may act on in a signed-in browser's name (the platform's scopes)
        "oauth_client_allowed_scopes": list(rbac.custom_scopes()),
    }
]
# --- permissions: custom scopes, grouped into roles granted through groups ------------------
c.JupyterHub.custom_scopes = rbac.custom_scopes(features)
c.JupyterHub.load_groups = rbac.load_groups()
c.JupyterHub.load_roles = [
    {
        "name": "user",
        "description": "Users use their own instances and the platform API.",
        "scopes": ["self", "access:services!service=workbench"],
    },
    {
        "name": "workbench-service",
        "description": "The platform API manages instances for users.",
        "scopes": [
            "admin:servers",
            "read:users",
            "list:users",
            # auto-stop and crash recovery: spawner state, activity, the instances' status
            "admin:server_state",
            "users:activity",
            "access:servers",
        ],
        "services": ["workbench"],
    },
    *rbac.load_roles(settings.admin_users, features),
    {
        # JupyterHub's default "server" role, plus the platform API as the instance's owner:
        # the JupyterLab panel's server extension calls it with the instance's own token
        "name": "server",
        "description": "Post activity; the platform API for the instance's panel and SDK.",
        "scopes": [
            "users:activity!user",
            "access:servers!server",
            "access:services!service=workbench",
            # what each feature lets an instance's own token do (hub/features.py grants)
            *rbac.server_scopes(features),
        ],
    },
]

# --- instances -------------------------------------------------------------------------
if settings.backend == "docker":
    engine = settings.engine()
    c.JupyterHub.spawner_class = "spawner.docker.WorkbenchDockerSpawner"
    spawner = c.WorkbenchDockerSpawner
    spawner.client_kwargs = {"base_url": engine.url}
    c.JupyterHub.services[0]["environment"]["WORKBENCH_ENGINE_URL"] = engine.url
    spawner.prefix = settings.container_prefix
    spawner.hub_connect_url = f"http://{settings.hub_connect_host}:{settings.hub_port}"
    # instances reach the platform API directly, as they reach the hub (the proxy's public
    # address may be loopback only): the service listens on all interfaces too
    c.JupyterHub.services[0]["environment"]["WORKBENCH_SERVICE_IP"] = "0.0.0.0"
    spawner.environment = {
        "WORKBENCH_API_URL": (
            f"http://{settings.hub_connect_host}:{settings.service_port}/services/workbench/api"
        ),
    }
    from spawner.storage_files import fixed_size_support

    # the API's instance models say why where it is not (features/instances/storage.py)
    fixed_size, _ = fixed_size_support(settings.storage_fixed_size, engine.kind, engine.url)
    spawner.storage_files_dir = str(data / "storage") if fixed_size else ""
    if engine.kind == "docker":
        # Docker does not name the host inside containers; Podman does
        spawner.extra_host_config = {"extra_hosts": {settings.hub_connect_host: "host-gateway"}}
else:
    c.JupyterHub.spawner_class = "spawner.kubernetes.WorkbenchKubeSpawner"
    spawner = c.WorkbenchKubeSpawner
    if settings.kubernetes_namespace:
        spawner.namespace = settings.kubernetes_namespace
    if settings.storage_class:
        spawner.storage_class = settings.storage_class
    # instances reach the platform API inside the cluster, on the hub's host (the SDK in
    # every kernel and the panel use it)
    c.JupyterHub.services[0]["environment"]["WORKBENCH_SERVICE_IP"] = "0.0.0.0"
    spawner.workbench_api_url = (
        f"http://{{hub_host}}:{settings.service_port}/services/workbench/api"
    )
for key, value in settings.spawner_config().items():
    setattr(spawner, key, value)

# --- what instances get to reach package mirrors: the host's CA bundle and pip settings by
# default (spawner/instance_network.py); files written at each hub start, mounted read-only
from spawner.instance_network import write_instance_files  # noqa: E402

instance_network = settings.instance_network()
spawner.instance_environment = instance_network.environment
spawner.instance_files = write_instance_files(instance_network, data / "instance-files")


c.Spawner.start_timeout = settings.start_timeout
c.Spawner.http_timeout = settings.start_timeout
c.Spawner.default_url = "/lab"
# auto-stop and crash recovery (features/instances/lifecycle.py): a dead container is noticed
# within poll_interval; instances report their own activity, the proxy's traffic does not count
c.Spawner.poll_interval = settings.poll_interval
# (in the spawner class's own section too: where that section sets environment, it wins)
activity_env = {"JUPYTERHUB_ACTIVITY_INTERVAL": str(settings.activity_report_seconds)}
c.Spawner.environment.update(activity_env)
spawner.environment.update(activity_env)
c.JupyterHub.proxy_class = "hub.activity.InstanceActivityProxy"


class HubContext:
    """What a feature's hub_config(c, hub) works with: the settings, the data folder, the
    spawner class's configuration section and shared views of the platform database."""

    def __init__(self):
        self.settings = settings
        self.data = data
        self.spawner = spawner

    @functools.cached_property
    def db(self):
        """The platform database, made once on first use: one connection pool for the hub."""
        from hub.db import Database

        return Database(database_url(settings))

    def shared(self, reference: str, *args):
        """A factory for the spawners (JupyterHub copies its configuration, so it holds no
        live objects): `reference(platform_db, *args)`, made once on first use."""

        @functools.cache
        def make():
            return load_reference(reference)(self.db, *args)

        return make


hub_context = HubContext()


# --- audit of instance operations made through the hub's own pages and API ------------------
def _audit_log():
    from hub.audit import AuditLog

    events = {name for feature in features for name in feature.audit_events}
    return AuditLog(hub_context.db, settings.audit_retention_days, events=events)


audit_hub_requests(_audit_log)

# --- each feature's services and configuration ---------------------------------------------
service_env = {
    key: value
    for key, value in c.JupyterHub.services[0]["environment"].items()
    if key in ("WORKBENCH_CONFIG", "PYTHONPATH", "WORKBENCH_ENGINE_URL")
}
for feature in features:
    for service in feature.services:
        c.JupyterHub.services.append(
            {
                "name": service.name,
                "command": [sys.executable, "-m", service.module],
                "cwd": os.getcwd(),
                "environment": dict(service_env),
                "display": False,
            }
        )
        if service.scopes:
            c.JupyterHub.load_roles.append(
                {
                    "name": f"{service.name}-service",
                    "description": service.description,
                    "scopes": list(service.scopes),
                    "services": [service.name],
                }
            )
for _feature, configure in collect(features, "hub_config"):
    configure(c, hub_context)

# --- anything else, from the settings file's other tables ----------------------------------
c.merge(extra_config)
