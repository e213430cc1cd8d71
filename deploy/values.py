"""The bundle's values: the documented defaults (values.yaml), users' files merged over, checked."""

from __future__ import annotations

import copy
import difflib
import re
from pathlib import Path

import yaml

DEFAULTS_FILE = Path(__file__).with_name("values.yaml")

# mappings and lists whose content is the user's (labels, annotations, pod-spec parts,
# settings checked elsewhere): their keys are not compared with the defaults
FREE = {
    "hub.resources",
    "hub.resources.requests",
    "hub.resources.limits",
    "proxy.resources",
    "proxy.resources.requests",
    "proxy.resources.limits",
}
SERVICE_TYPES = ("LoadBalancer", "NodePort", "ClusterIP")
PULL_POLICIES = ("IfNotPresent", "Always", "Never")
ACCESS_MODES = ("ReadWriteOnce", "ReadWriteMany")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
HOST = re.compile(r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
REGISTRY = re.compile(r"^[a-zA-Z0-9]([-a-zA-Z0-9.]*[a-zA-Z0-9])?(:[0-9]{1,5})?$")
REPO_PATH = re.compile(r"^[a-z0-9]+([._/-][a-z0-9]+)*$")
QUANTITY = re.compile(r"^([0-9]+(\.[0-9]+)?|\.[0-9]+)(m|k|Ki|Mi|Gi|Ti|Pi|Ei|M|G|T|P|E)?$")
SECRET_HEX = re.compile(r"^[0-9a-f]{64}$")
# an image reference that names its tag (or digest): [registry/]path:tag
IMAGE = re.compile(
    r"^(?:[a-zA-Z0-9][-a-zA-Z0-9.]*(?::[0-9]+)?/)?[a-z0-9]+(?:[._/-][a-z0-9]+)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|@sha256:[0-9a-f]{64})$"
)


class ValuesError(ValueError):
    """The values are unusable; the message names the key and what to write instead."""


def defaults() -> dict:
    """The documented defaults (deploy/values.yaml)."""
    return yaml.safe_load(DEFAULTS_FILE.read_text())


def read_values_file(path: str | Path) -> dict:
    """One values file as a mapping ({} when empty)."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as e:
        raise ValuesError(f"cannot read values file {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ValuesError(f"values file {path} is not valid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValuesError(f"values file {path} must hold a mapping of keys, not a {_kind(data)}")
    return data


def _kind(value) -> str:
    return {dict: "mapping", list: "list", str: "string", bool: "boolean"}.get(
        type(value), "number" if isinstance(value, int | float) else type(value).__name__
    )


def _free(path: str, default) -> bool:
    """Whether a mapping's keys are the user's own: an empty mapping by default, or listed."""
    return path in FREE or default == {}


def merge(base, over, path: str = ""):
    """`over` merged into a copy of `base` key by key; unknown keys and wrong types refused."""
    if isinstance(base, dict) and not _free(path, base):
        if not isinstance(over, dict):
            raise ValuesError(f"{path or 'values'}: must be a mapping, not a {_kind(over)}")
        merged = copy.deepcopy(base)
        for key, value in over.items():
            where = f"{path}.{key}" if path else str(key)
            if key not in base:
                near = difflib.get_close_matches(str(key), [str(k) for k in base], n=1)
                hint = (
                    f" Did you mean {(path + '.' if path else '') + near[0]}?"
                    if near
                    else f" Valid keys: {', '.join(sorted(map(str, base)))}."
                )
                raise ValuesError(f"{where}: unknown key.{hint}")
            merged[key] = merge(base[key], value, where)
        return merged
    if base is None or over is None:
        return copy.deepcopy(over)
    if isinstance(base, bool) != isinstance(over, bool) or (
        not isinstance(base, bool)
        and not (isinstance(base, int | float) and isinstance(over, int | float))
        and type(base) is not type(over)
    ):
        raise ValuesError(f"{path}: must be a {_kind(base)}, not a {_kind(over)} ({over!r})")
    return copy.deepcopy(over)


def load_values(paths: list[str | Path] = (), overrides: dict | None = None) -> dict:
    """The defaults with each file merged over them in order, then `overrides`; checked."""
    values = defaults()
    for path in paths:
        values = merge(values, read_values_file(path))
    if overrides:
        values = merge(values, overrides)
    check(values)
    return values


def _quantity(values: dict, path: str, *, positive: bool = True) -> None:
    value = get(values, path)
    text = str(value)
    if isinstance(value, bool) or not QUANTITY.match(text):
        raise ValuesError(
            f"{path}: {value!r} is not a size or amount (examples: 10Gi, 512Mi, 500m, 2); "
            "negative sizes are refused"
        )
    if positive and float(re.match(r"[0-9.]+", text).group(0)) <= 0:
        raise ValuesError(f"{path}: must be more than 0, not {value!r}")


def get(values: dict, path: str):
    node = values
    for part in path.split("."):
        node = node[part]
    return node


def _one_of(values: dict, path: str, choices) -> None:
    value = get(values, path)
    if value not in choices:
        raise ValuesError(f"{path}: must be one of {', '.join(choices)}, not {value!r}")


def _image(values: dict, path: str) -> None:
    value = get(values, path)
    if value and not IMAGE.match(value):
        raise ValuesError(
            f"{path}: {value!r} is not an image reference with a tag "
            "(example: registry.example.com/ai-workbench/hub:1.0.0)"
        )


def _port(values: dict, path: str, low: int = 1, high: int = 65535, zero: bool = False) -> None:
    value = get(values, path)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValuesError(f"{path}: must be a port number, not {value!r}")
    if not (zero and value == 0) and not low <= value <= high:
        raise ValuesError(f"{path}: must be between {low} and {high}, not {value}")


def check(values: dict) -> None:
    """Refuse values no cluster would take, naming the key."""
    namespace = values["namespace"]
    if not isinstance(namespace, str) or not DNS_LABEL.match(namespace):
        raise ValuesError(
            f"namespace: {namespace!r} is not a DNS label (lower-case letters, digits and '-', "
            "at most 63, starting and ending with a letter or digit)"
        )
    url = values["publicUrl"]
    if url and not re.match(r"^https?://[^/\s:]+(:[0-9]+)?/?$", url):
        raise ValuesError(
            f"publicUrl: {url!r} must be an origin such as https://workbench.example.com "
            "(scheme, host, optional port, no path)"
        )
    registry = values["registry"]
    if registry["url"] and not REGISTRY.match(registry["url"]):
        raise ValuesError(
            f"registry.url: {registry['url']!r} must be host[:port] of a registry "
            "(example: registry.example.com:5000), without a scheme or path"
        )
    if registry["path"] and not REPO_PATH.match(registry["path"]):
        raise ValuesError(
            f"registry.path: {registry['path']!r} must be lower-case path components "
            "(example: team/platform)"
        )
    if registry["password"] and not registry["username"]:
        raise ValuesError("registry.password: set registry.username as well")
    if (registry["username"] or registry["insecure"]) and not registry["url"]:
        raise ValuesError("registry.url: required with registry credentials or insecure")
    _image(values, "hub.image")
    _one_of(values, "hub.imagePullPolicy", PULL_POLICIES)
    _quantity(values, "hub.storage.size")
    for component in ("hub", "proxy"):
        for part in ("requests", "limits"):
            amounts = values[component]["resources"].get(part) or {}
            if not isinstance(amounts, dict):
                raise ValuesError(f"{component}.resources.{part}: must be a mapping")
            for name in amounts:
                _quantity(values, f"{component}.resources.{part}.{name}")
    for key in ("storageClass",):
        for path in (f"hub.storage.{key}", f"stores.{key}", f"instances.{key}"):
            value = get(values, path)
            if value and not DNS_SUBDOMAIN.match(value):
                raise ValuesError(f"{path}: {value!r} is not a StorageClass name (a DNS name)")
    for name in ("cookieSecret",):
        value = values["hub"][name]
        if value and not SECRET_HEX.match(value):
            raise ValuesError(f"hub.{name}: must be 64 hex digits (openssl rand -hex 32)")
    if values["proxy"]["secretToken"] and not SECRET_HEX.match(values["proxy"]["secretToken"]):
        raise ValuesError("proxy.secretToken: must be 64 hex digits (openssl rand -hex 32)")
    for section in ("hub.config", "hub.extraConfig"):
        for key, value in get(values, section).items():
            if section == "hub.config" and (
                not isinstance(value, dict) or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key)
            ):
                raise ValuesError(
                    f"{section}.{key}: must be a configurable class's name with a mapping of "
                    "its traits, e.g. GenericOAuthenticator: {client_id: workbench}"
                )
            if section == "hub.extraConfig" and not isinstance(value, str):
                raise ValuesError(f"{section}.{key}: must be Python code as a string")
    for component in ("proxy", "ssh"):
        service = values[component]["service"]
        _one_of(values, f"{component}.service.type", SERVICE_TYPES)
        _port(values, f"{component}.service.port")
        _port(values, f"{component}.service.nodePort", 30000, 32767, zero=True)
        if service["nodePort"] and service["type"] == "ClusterIP":
            raise ValuesError(
                f"{component}.service.nodePort: a ClusterIP Service has no node port; "
                f"set {component}.service.type to NodePort or LoadBalancer"
            )
    ingress = values["proxy"]["ingress"]
    if ingress["enabled"] and not ingress["hosts"]:
        raise ValuesError(
            "proxy.ingress.hosts: required when proxy.ingress.enabled is true "
            "(example: [workbench.example.com])"
        )
    for i, host in enumerate(ingress["hosts"]):
        if not isinstance(host, str) or not HOST.match(host):
            raise ValuesError(f"proxy.ingress.hosts[{i}]: {host!r} is not a host name")
    if ingress["ingressClassName"] and not DNS_SUBDOMAIN.match(ingress["ingressClassName"]):
        raise ValuesError(
            f"proxy.ingress.ingressClassName: {ingress['ingressClassName']!r} is not a DNS name"
        )
    secret_name = ingress["tls"]["secretName"]
    if secret_name and not DNS_SUBDOMAIN.match(secret_name):
        raise ValuesError(f"proxy.ingress.tls.secretName: {secret_name!r} is not a Secret name")
    host = values["ssh"]["publicHost"]
    if host and not HOST.match(host) and not re.match(r"^[0-9.]+$", host):
        raise ValuesError(f"ssh.publicHost: {host!r} is not a host name")
    agent = values["saveAgent"]
    _port(values, "saveAgent.port")
    _image(values, "saveAgent.image")
    if agent["enabled"] and not agent["image"]:
        raise ValuesError(
            "saveAgent.image: required when saveAgent.enabled is true: an image holding this "
            "project and nerdctl, which Debian does not package (see images/node_agent/). "
            "Without the agent, saving an instance answers 501."
        )
    if agent["enabled"] and not registry["url"]:
        raise ValuesError(
            "registry.url: the save agent pushes saved images to a registry; set registry.url "
            "or saveAgent.enabled: false"
        )
    database = values["database"]
    if database["url"] and not re.match(r"^[a-z][a-z0-9+]*://", database["url"]):
        raise ValuesError(
            "database.url: must be an SQLAlchemy URL such as "
            "postgresql://user:password@host:5432/workbench"
        )
    existing = database["existingSecret"]
    if bool(existing["name"]) != bool(existing["key"]):
        raise ValuesError("database.existingSecret: set both name and key")
    if existing["name"] and database["url"]:
        raise ValuesError("database.url: set either database.url or database.existingSecret")
    if existing["name"] and not DNS_SUBDOMAIN.match(existing["name"]):
        raise ValuesError(f"database.existingSecret.name: {existing['name']!r} is not a name")
    if database["upgrade"] is not None and not isinstance(database["upgrade"], bool):
        raise ValuesError("database.upgrade: must be true, false or null")
    _one_of(values, "stores.accessMode", ACCESS_MODES)
    for key in ("jobsSize", "modelsSize", "datasetsSize"):
        _quantity(values, f"stores.{key}")
    for path in ("hub.tolerations", "instances.tolerations"):
        for i, toleration in enumerate(get(values, path)):
            if not isinstance(toleration, dict):
                raise ValuesError(f"{path}[{i}]: must be a mapping, as in a pod spec")
    for path in ("hub.nodeSelector", "instances.nodeSelector"):
        for key, value in get(values, path).items():
            if not isinstance(value, str):
                raise ValuesError(f"{path}.{key}: label values are strings, not {value!r}")
    for path in (
        "hub.podAnnotations",
        "proxy.podAnnotations",
        "proxy.service.annotations",
        "proxy.ingress.annotations",
        "ssh.service.annotations",
    ):
        for key, value in get(values, path).items():
            if not isinstance(value, str):
                raise ValuesError(
                    f"{path}.{key}: annotation values are strings; quote it ({str(value)!r})"
                )
    for i, flavor in enumerate(values["flavors"]):
        if not isinstance(flavor, dict):
            raise ValuesError(f"flavors[{i}]: must be a mapping (name, cpu, memory, ...)")
