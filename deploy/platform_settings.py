"""The cluster's settings file (workbench.toml) from the values, checked as the hub checks it."""

from __future__ import annotations

import difflib
import tempfile
from pathlib import Path
from urllib.parse import urlparse

from traitlets import TraitError

from .common import CLUSTER_DIR, DATA_DIR, HUB, toml_key, toml_table, toml_value
from .values import ValuesError

# settings the bundle sets from its own keys: refused in `workbench:`, with the key to use
BUNDLE_SETTINGS = {
    "backend": "(always kubernetes in a cluster)",
    "kubernetes_namespace": "namespace",
    "data_dir": "hub.storage (the hub's volume)",
    "bind_url": "publicUrl",
    "hub_connect_host": "(the hub's Service)",
    "db_url": "database.url",
    "platform_db_url": "database.url",
    "admin_password": "hub.adminPassword",
    "image_registry": "registry.url and registry.path",
    "registry_url": "registry.url",
    "registry_username": "registry.username",
    "registry_password": "registry.password",
    "registry_insecure": "registry.insecure",
    "save_agent_token": "saveAgent.token",
    "save_agent_namespace": "namespace",
    "save_agent_port": "saveAgent.port",
    "ssh_public_host": "ssh.publicHost",
    "storage_class": "instances.storageClass",
    "flavors_path": "flavors",
}
# settings whose values are secret: never in the ConfigMap; the hub's pod puts them into
# the settings file at start from its Secret (deploy/hub.py, PREPARE_SETTINGS)
SECRET_SETTINGS = ("db_url", "registry_password", "save_agent_token")


def image_registry(values: dict) -> str:
    """The "{registry}" prefix of the catalog's images: <url>/<path>/, else "localhost/"."""
    registry = values["registry"]
    if not registry["url"]:
        return "localhost/"
    return "/".join(p for p in (registry["url"], registry["path"]) if p) + "/"


def public_origin(values: dict) -> str:
    """Where users reach the platform: publicUrl, else the ingress's first host."""
    if values["publicUrl"]:
        return values["publicUrl"].rstrip("/")
    ingress = values["proxy"]["ingress"]
    if ingress["enabled"]:
        scheme = "https" if ingress["tls"]["secretName"] else "http"
        host = next((h for h in ingress["hosts"] if not h.startswith("*.")), "")
        if host:
            return f"{scheme}://{host}"
    return ""


def _classes():
    from hub.features import load_features
    from hub.settings import WorkbenchSettings

    features = {f.name: f.load("settings") for f in load_features() if f.settings}
    return WorkbenchSettings, features


def _unknown(path: str, key: str, known) -> ValuesError:
    near = difflib.get_close_matches(key, list(known), n=1)
    hint = f" Did you mean {path}.{near[0]}?" if near else ""
    return ValuesError(
        f"{path}.{key}: unknown setting.{hint} See hub/workbench.example.toml for the settings."
    )


def check_passthrough(table: dict) -> None:
    """Each key of `workbench:` is a setting (or a feature's table of settings) with a valid
    value; the bundle's own are refused with the key to use instead."""
    settings_class, features = _classes()
    known = settings_class.class_traits(config=True)
    for key, value in table.items():
        path = f"workbench.{key}"
        if key in BUNDLE_SETTINGS:
            raise ValuesError(f"{path}: set by the bundle; use {BUNDLE_SETTINGS[key]} instead")
        if key in features and isinstance(value, dict):
            cls = features[key]
            own = cls.class_own_traits(config=True)
            for name, item in value.items():
                if name not in own:
                    raise _unknown(path, name, own)
                try:
                    cls(**{name: item})
                except TraitError as e:
                    raise ValuesError(f"{path}.{name}: {e}") from None
            continue
        if key not in known:
            raise _unknown("workbench", key, [*known, *features])
        try:
            settings_class(**{key: value})
        except TraitError as e:
            raise ValuesError(f"{path}: {e}") from None


def workbench_table(values: dict, namespace: str) -> dict:
    """The [workbench] table of the cluster (feature tables as nested mappings), without
    the secret settings."""
    registry = values["registry"]
    agent = values["saveAgent"]
    origin = public_origin(values)
    table = {
        "backend": "kubernetes",
        "kubernetes_namespace": namespace,
        "data_dir": DATA_DIR,
        "bind_url": origin or "http://:8000",
        "hub_connect_host": HUB,
        "image_registry": image_registry(values),
        "registry_url": registry["url"],
        "registry_username": registry["username"],
        "registry_insecure": registry["insecure"],
        "save_agent_namespace": namespace,
        "save_agent_port": agent["port"],
        "ssh_public_host": values["ssh"]["publicHost"] or (urlparse(origin).hostname or ""),
        "storage_class": values["instances"]["storageClass"],
    }
    if values["flavors"]:
        table["flavors_path"] = f"{CLUSTER_DIR}/flavors.yaml"
    for key, value in values["workbench"].items():
        if isinstance(value, dict) and isinstance(table.get(key), dict):
            table[key] = {**table[key], **value}
        else:
            table[key] = value
    return table


def render_toml(table: dict) -> str:
    """workbench.toml: the [workbench] table first (its own keys right below its header, where
    the hub's pod adds the secret ones), then each feature's [workbench.<feature>] table."""
    settings_class, _ = _classes()
    known = settings_class.class_traits(config=True)
    tables = {k: v for k, v in table.items() if isinstance(v, dict) and k not in known}
    scalars = {k: v for k, v in table.items() if k not in tables}
    lines = [
        "# ai-workbench's settings in the cluster, rendered by `workbench kubernetes render`.",
        "# Secret settings (db_url, registry_password, save_agent_token) are added from the",
        "# hub's Secret when the hub's pod starts.",
        *toml_table("workbench", scalars),
    ]
    for name, values in tables.items():
        lines += ["", *toml_table(f"workbench.{toml_key(name)}", values)]
    return "\n".join(lines) + "\n"


def secret_lines(settings: dict[str, str]) -> str:
    """The lines the hub's pod adds below [workbench]: `name = "value"` (a test's reference)."""
    return "".join(f"{name} = {toml_value(value)}\n" for name, value in settings.items())


def check_settings_file(text: str, secret: dict[str, str]) -> None:
    """Load the settings file as the hub will (secret settings added) and refuse what the hub
    would refuse (cross-setting rules, feature tables)."""
    from hub.settings import SettingsError, load_settings

    full = text.replace("[workbench]\n", "[workbench]\n" + secret_lines(secret), 1)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "workbench.toml"
        path.write_text(full)
        try:
            load_settings(path)
        except SettingsError as e:
            message = str(e).replace(f" of {path}", "").replace(f"{path}: ", "")
            message = message.replace(f" in {path}", "")
            raise ValuesError(f"workbench: {message}") from None
