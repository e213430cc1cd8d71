"""The hub: its Deployment (JupyterHub, platform API, SSH gateway), ConfigMap, Secret, volumes."""

from __future__ import annotations

import json

import yaml

from images.node_agent import AGENT_NAME

from .common import (
    API_SERVICE,
    CLUSTER_DIR,
    DATA_DIR,
    DATA_MOUNT,
    HUB,
    HUB_DATA_PVC,
    HUB_GID,
    HUB_UID,
    IMAGE_HUB_CONFIG,
    PROXY_API,
    REGISTRY_SECRET,
    SECRETS_DIR,
    SETTINGS_FILE,
    STORE_PVCS,
    b64,
    checksum,
    container_security_context,
    deployment,
    metadata,
    place_on_hub_nodes,
    selector,
)
from .platform_settings import public_origin

# the settings file the hub's init container writes (an emptyDir in memory), mounted over
# the image's /etc/workbench/workbench.toml
RUN_DIR = "/run/workbench"
SECRET_SETTING_ENV = "WORKBENCH_SECRET_SETTING_"

# Runs in the hub pod's first init container: the settings file is the ConfigMap's, with
# the secret settings (from the Secret, through the environment) added below [workbench].
PREPARE_SETTINGS = '''"""Write the hub's settings file: the ConfigMap's and the secret settings."""

import json
import os
import pathlib
import tomllib

PREFIX = "WORKBENCH_SECRET_SETTING_"
text = pathlib.Path(os.environ["WORKBENCH_SETTINGS_TEMPLATE"]).read_text()
lines = "".join(
    f"{name[len(PREFIX):].lower()} = {json.dumps(value, ensure_ascii=False)}\\n"
    for name, value in sorted(os.environ.items())
    if name.startswith(PREFIX) and value
)
if "[workbench]\\n" not in text:
    raise SystemExit("the settings template has no [workbench] table: render the bundle again")
text = text.replace("[workbench]\\n", "[workbench]\\n" + lines, 1)
tomllib.loads(text)  # never start the hub on a file it cannot read
target = pathlib.Path(os.environ["WORKBENCH_CONFIG"])
target.parent.mkdir(parents=True, exist_ok=True)
fd = os.open(target, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
with os.fdopen(fd, "w") as f:
    f.write(text)
# the data folder: made by the hub's user inside the volume (whose root is root's), 0700
data = pathlib.Path(os.environ["WORKBENCH_DATA_DIR"])
data.mkdir(mode=0o700, exist_ok=True)
data.chmod(0o700)
print(f"settings written to {target} ({len(lines.splitlines())} secret setting(s))")
'''

# Runs in the hub pod's second init container: the platform's migrations, once, before
# JupyterHub and its services start (each service checks again at its start, under the
# same lock, and finds nothing left to do).
MIGRATE = '''"""Bring the platform's database to the newest migration of every feature."""

import logging

from hub.db import database_url, upgrade_when_ready
from hub.settings import load_settings

logging.basicConfig(level=logging.INFO, format="[%(levelname)1.1s %(asctime)s migrate] %(message)s")
settings, _ = load_settings()
settings.prepare_data_dir()
upgrade_when_ready(database_url(settings))
logging.info("the platform database is up to date")
'''

# JupyterHub's configuration file in the cluster: the image's, then the cluster's wiring.
HUB_CONFIG = '''"""ai-workbench's hub configuration in a cluster: the hub image's own, then the
cluster's wiring and hub.config (jupyterhub.json in the hub's Secret), then
hub.extraConfig."""

import json
import os
from pathlib import Path

c = get_config()  # noqa: F821 - provided by JupyterHub
image_config = os.environ.get("WORKBENCH_IMAGE_CONFIG", "/etc/workbench/jupyterhub_config.py")
load_subconfig(image_config)  # noqa: F821 - provided by JupyterHub
if "spawner_class" not in c.JupyterHub:
    raise RuntimeError(f"{image_config} was not loaded: is this the platform's hub image?")
secrets = Path(os.environ.get("WORKBENCH_SECRETS_DIR", "/etc/workbench/secrets"))
# the platform API as the proxy (another pod) reaches it: its own Service
for service in c.JupyterHub.services:
    if service["name"] == "workbench":
        service["url"] = os.environ["WORKBENCH_SERVICE_URL"]
for section, traits in json.loads((secrets / "jupyterhub.json").read_text()).items():
    for name, value in traits.items():
        setattr(c[section], name, value)
extra = secrets / "extra_config.json"
if extra.exists():
    for name, code in sorted(json.loads(extra.read_text()).items()):
        scope = {"c": c, "get_config": get_config}  # noqa: F821
        exec(compile(code, f"hub.extraConfig.{name}", "exec"), scope)
'''


def ports(settings) -> dict[str, int]:
    """The hub pod's ports, as the settings name them."""
    return {
        "http": settings.hub_port,
        "api": settings.service_port,
        "ssh": settings.ssh_port,
    }


def api_url(namespace: str, settings) -> str:
    """The platform API's Service URL (the proxy's route, the service's own address)."""
    return f"http://{API_SERVICE}:{settings.service_port}"


def jupyterhub_config(values: dict, settings) -> dict:
    """The cluster's wiring of JupyterHub and KubeSpawner, then hub.config over it."""
    database = values["database"]
    external = bool(database["url"] or database["existingSecret"]["name"])
    upgrade = database["upgrade"] if database["upgrade"] is not None else not external
    instances = values["instances"]
    spawner = {
        "workbench_api_url": (
            f"http://{API_SERVICE}:{settings.service_port}/services/workbench/api"
        ),
        "gpu_node_label": instances["gpuNodeLabel"],
    }
    if instances["tolerations"]:
        spawner["tolerations"] = instances["tolerations"]
    if instances["nodeSelector"]:
        spawner["node_selector"] = instances["nodeSelector"]
    if values["registry"]["username"]:
        spawner["image_pull_secrets"] = [REGISTRY_SECRET]
    config = {
        "JupyterHub": {
            # instances, services and the proxy reach the hub through its Service
            "hub_connect_url": f"http://{HUB}:{settings.hub_port}",
            # instances' pods belong to no Deployment: they run on through hub upgrades
            "cleanup_servers": False,
            "upgrade_db": upgrade,
        },
        "ConfigurableHTTPProxy": {
            "should_start": False,
            "api_url": f"http://{PROXY_API}:{settings.proxy_api_port}",
        },
        "WorkbenchKubeSpawner": spawner,
    }
    origin = public_origin(values)
    if origin:
        # what JupyterHub puts in links and redirects, whatever address a request came by
        config["JupyterHub"]["public_url"] = origin + "/"
    for section, traits in values["hub"]["config"].items():
        config[section] = {**config.get(section, {}), **traits}
    return config


def secret_settings(values: dict) -> dict[str, tuple[str, str]]:
    """{setting: (Secret, key)} of the secret settings the hub's pod reads."""
    found = {}
    database = values["database"]
    if database["url"]:
        found["db_url"] = (HUB, "db-url")
    elif database["existingSecret"]["name"]:
        found["db_url"] = (database["existingSecret"]["name"], database["existingSecret"]["key"])
    if values["registry"]["password"]:
        found["registry_password"] = (HUB, "registry-password")
    if values["saveAgent"]["enabled"]:
        found["save_agent_token"] = (AGENT_NAME, "token")
    return found


def make_secret(values: dict, namespace: str, secrets, settings) -> dict:
    """The hub's Secret: JupyterHub's cookie secret, the proxy's token, the first admin's
    password, the secret settings, and the JupyterHub configuration that may hold secrets."""
    hub = values["hub"]
    data = {
        "cookie-secret": secrets.get("cookie-secret", hub["cookieSecret"]),
        "proxy-token": secrets.get("proxy-token", values["proxy"]["secretToken"]),
        "admin-password": secrets.get("admin-password", hub["adminPassword"]),
        "jupyterhub.json": json.dumps(jupyterhub_config(values, settings), indent=2),
    }
    if hub["extraConfig"]:
        data["extra_config.json"] = json.dumps(hub["extraConfig"], indent=2)
    if values["database"]["url"]:
        data["db-url"] = values["database"]["url"]
    if values["registry"]["password"]:
        data["registry-password"] = values["registry"]["password"]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(HUB, namespace, HUB),
        "type": "Opaque",
        "data": {k: b64(v) for k, v in sorted(data.items())},
    }


def make_config_map(values: dict, namespace: str, settings_toml: str) -> dict:
    data = {
        "workbench.toml": settings_toml,
        "jupyterhub_config.py": HUB_CONFIG,
        "prepare_settings.py": PREPARE_SETTINGS,
        "migrate.py": MIGRATE,
    }
    if values["flavors"]:
        data["flavors.yaml"] = yaml.safe_dump({"flavors": values["flavors"]}, sort_keys=False)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(HUB, namespace, HUB),
        "data": data,
    }


def make_pvcs(values: dict, namespace: str) -> list[dict]:
    """The hub's data volume (ReadWriteOnce: one hub at a time) and the stores' volumes."""

    def claim(name: str, size: str, storage_class: str, mode: str, component: str) -> dict:
        spec = {"accessModes": [mode], "resources": {"requests": {"storage": str(size)}}}
        if storage_class:
            spec["storageClassName"] = storage_class
        return {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": metadata(name, namespace, component),
            "spec": spec,
        }

    hub = values["hub"]["storage"]
    stores = values["stores"]
    claims = [claim(HUB_DATA_PVC, hub["size"], hub["storageClass"], "ReadWriteOnce", HUB)]
    for store, name in STORE_PVCS.items():
        size = stores[f"{store}Size"]
        claims.append(claim(name, size, stores["storageClass"], stores["accessMode"], "stores"))
    return claims


def _secret_env(name: str, secret: str, key: str) -> dict:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def make_deployment(
    values: dict, namespace: str, image: str, settings, config_map: dict, secret: dict
) -> dict:
    """The hub: one replica, replaced (never two at once: SQLite, migrations), with the
    platform API service and the SSH gateway as JupyterHub-managed processes in its pod."""
    hub = values["hub"]
    port = ports(settings)
    settings_env = [
        _secret_env(SECRET_SETTING_ENV + name.upper(), ref, key)
        for name, (ref, key) in sorted(secret_settings(values).items())
    ]
    config_mount = {"name": "config", "mountPath": CLUSTER_DIR, "readOnly": True}
    data_mount = {"name": "data", "mountPath": DATA_MOUNT}
    settings_dir = {"name": "settings", "mountPath": RUN_DIR}
    init_security = container_security_context()
    init = [
        {
            "name": "settings",
            "image": image,
            "imagePullPolicy": hub["imagePullPolicy"],
            # args, not command: the image's entrypoint (tini) stays process 1
            "args": ["python3", f"{CLUSTER_DIR}/prepare_settings.py"],
            "env": [
                {"name": "WORKBENCH_SETTINGS_TEMPLATE", "value": f"{CLUSTER_DIR}/workbench.toml"},
                {"name": "WORKBENCH_CONFIG", "value": f"{RUN_DIR}/workbench.toml"},
                {"name": "WORKBENCH_DATA_DIR", "value": DATA_DIR},
                *settings_env,
            ],
            "volumeMounts": [config_mount, settings_dir, data_mount],
            "securityContext": init_security,
        },
        {
            "name": "migrate",
            "image": image,
            "imagePullPolicy": hub["imagePullPolicy"],
            "args": ["python3", f"{CLUSTER_DIR}/migrate.py"],
            "env": [{"name": "WORKBENCH_CONFIG", "value": f"{RUN_DIR}/workbench.toml"}],
            "volumeMounts": [config_mount, settings_dir, data_mount],
            "securityContext": init_security,
        },
    ]
    store_mounts = [
        {"name": f"store-{store}", "mountPath": f"{DATA_DIR}/{store}"} for store in STORE_PVCS
    ]
    container = {
        "name": HUB,
        "image": image,
        "imagePullPolicy": hub["imagePullPolicy"],
        # the image's entrypoint (tini) stays process 1: it reaps the hub's services
        "args": ["jupyterhub", "-f", f"{CLUSTER_DIR}/jupyterhub_config.py"],
        "env": [
            {"name": "WORKBENCH_CONFIG", "value": SETTINGS_FILE},
            {"name": "WORKBENCH_IMAGE_CONFIG", "value": IMAGE_HUB_CONFIG},
            {"name": "WORKBENCH_SECRETS_DIR", "value": SECRETS_DIR},
            {"name": "WORKBENCH_SERVICE_URL", "value": api_url(namespace, settings)},
            _secret_env("JPY_COOKIE_SECRET", HUB, "cookie-secret"),
            _secret_env("CONFIGPROXY_AUTH_TOKEN", HUB, "proxy-token"),
            _secret_env("WORKBENCH_ADMIN_PASSWORD", HUB, "admin-password"),
        ],
        "ports": [
            {"name": name, "containerPort": number, "protocol": "TCP"}
            for name, number in port.items()
        ],
        "volumeMounts": [
            config_mount,
            {"name": "settings", "mountPath": SETTINGS_FILE, "subPath": "workbench.toml"},
            {"name": "secrets", "mountPath": SECRETS_DIR, "readOnly": True},
            data_mount,
            *store_mounts,
        ],
        "resources": hub["resources"],
        # zero-to-jupyterhub's probes: ready as soon as /hub/health answers; a hub that
        # stops answering for five minutes is restarted
        "readinessProbe": {
            "httpGet": {"path": "/hub/health", "port": "http"},
            "periodSeconds": 2,
            "timeoutSeconds": 1,
            "failureThreshold": 1000,
        },
        "livenessProbe": {
            "httpGet": {"path": "/hub/health", "port": "http"},
            "initialDelaySeconds": 300,
            "periodSeconds": 10,
            "timeoutSeconds": 3,
            "failureThreshold": 30,
        },
        "securityContext": container_security_context(),
    }
    secret_items = ["jupyterhub.json"]
    if "extra_config.json" in secret["data"]:
        secret_items.append("extra_config.json")
    volumes = [
        {"name": "config", "configMap": {"name": HUB}},
        {"name": "settings", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
        {
            "name": "secrets",
            "secret": {
                "secretName": HUB,
                "items": [{"key": k, "path": k} for k in secret_items],
                "defaultMode": 0o440,
            },
        },
        {"name": "data", "persistentVolumeClaim": {"claimName": HUB_DATA_PVC}},
        *(
            {"name": f"store-{store}", "persistentVolumeClaim": {"claimName": name}}
            for store, name in STORE_PVCS.items()
        ),
    ]
    pod_spec = {
        "serviceAccountName": HUB,
        "automountServiceAccountToken": True,  # KubeSpawner and the runners call the API
        "securityContext": {
            "runAsUser": HUB_UID,
            "runAsGroup": HUB_GID,
            "fsGroup": HUB_GID,
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "initContainers": init,
        "containers": [container],
        "volumes": volumes,
    }
    place_on_hub_nodes(pod_spec, values)
    annotations = {
        # a changed configuration or secret restarts the hub (kubectl apply alone would not)
        "checksum/config": checksum(config_map["data"]),
        "checksum/secret": checksum(secret["data"]),
        **hub["podAnnotations"],
    }
    return deployment(HUB, namespace, pod_spec, annotations)


def make_services(namespace: str, settings) -> list[dict]:
    """The hub's API (8081: instances, the proxy, the hub's own services) and the platform
    API (instances' SDK and panel, the proxy's /services/workbench/ route)."""
    found = []
    for name, port_name, port in (
        (HUB, "http", settings.hub_port),
        (API_SERVICE, "api", settings.service_port),
    ):
        found.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": metadata(name, namespace, HUB),
                "spec": {
                    "type": "ClusterIP",
                    "selector": selector(HUB),
                    "ports": [
                        {
                            "name": port_name,
                            "port": port,
                            "targetPort": port_name,
                            "protocol": "TCP",
                        }
                    ],
                },
            }
        )
    return found
