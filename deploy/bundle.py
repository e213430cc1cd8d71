"""Every manifest of the platform from one values file: `workbench kubernetes render`."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import yaml

from . import hub, network, proxy, rbac, registry, save_agent, ssh
from .common import labels
from .platform_settings import (
    check_passthrough,
    check_settings_file,
    image_registry,
    render_toml,
    workbench_table,
)
from .secrets import SecretsFile
from .values import ValuesError, load_values

DEFAULT_SECRETS = "workbench-secrets.yaml"
# the order kubectl applies them in: what others refer to first
KIND_ORDER = [
    "Namespace",
    "ServiceAccount",
    "Secret",
    "ConfigMap",
    "PersistentVolumeClaim",
    "Role",
    "RoleBinding",
    "Service",
    "Deployment",
    "DaemonSet",
    "NetworkPolicy",
    "Ingress",
]


def hub_image(values: dict) -> str:
    """hub.image, else the platform's hub image in the values' registry."""
    if values["hub"]["image"]:
        return values["hub"]["image"]
    from images.catalog import platform_image_ref

    return platform_image_ref("hub", image_registry(values))


def _settings(table: dict):
    """The hub's effective settings of the values (ports), as the hub will read them."""
    from hub.settings import WorkbenchSettings

    known = WorkbenchSettings.class_traits(config=True)
    return WorkbenchSettings(**{k: v for k, v in table.items() if k in known})


def _check_flavors(flavors: list) -> None:
    from spawner.flavors import FlavorError, load_flavors

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "flavors.yaml"
        path.write_text(yaml.safe_dump({"flavors": flavors}))
        try:
            load_flavors(path)
        except (FlavorError, ValueError, TypeError) as e:
            raise ValuesError(f"flavors: {e}".replace(f" in {path}", "")) from None


def render(values: dict, secrets: SecretsFile) -> list[dict]:
    """The manifests of the platform (checked values in, kubectl-ready objects out)."""
    namespace = values["namespace"]
    check_passthrough(values["workbench"])
    if values["flavors"]:
        _check_flavors(values["flavors"])
    table = workbench_table(values, namespace)
    settings_toml = render_toml(table)
    # the secret settings as placeholders: the hub's checks need their names only
    check_settings_file(settings_toml, {name: "secret" for name in hub.secret_settings(values)})
    settings = _settings(table)
    image = hub_image(values)

    objects: list[dict] = []
    if values["createNamespace"] and namespace != "default":
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": namespace, "labels": labels("namespace")},
            }
        )
    objects += rbac.make_manifests(namespace)
    objects += registry.make_manifests(values, namespace)
    secret = hub.make_secret(values, namespace, secrets, settings)
    config_map = hub.make_config_map(values, namespace, settings_toml)
    objects += [secret, config_map]
    objects += hub.make_pvcs(values, namespace)
    objects += hub.make_services(namespace, settings)
    objects += proxy.make_services(values, namespace, settings)
    objects += ssh.make_service(values, namespace)
    objects.append(hub.make_deployment(values, namespace, image, settings, config_map, secret))
    objects.append(proxy.make_deployment(values, namespace, image, settings, secret))
    objects += save_agent.make_manifests(values, namespace, secrets)
    objects += network.make_policies(values, namespace, settings)
    objects += proxy.make_ingress(values, namespace)
    return sorted(objects, key=lambda o: KIND_ORDER.index(o["kind"]))


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the settings file, scripts) as literal blocks, readable in place;
    no anchors and aliases (shared parts are written out each time)."""

    def ignore_aliases(self, data):
        return True


def _str(dumper, value: str):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump(objects: list[dict]) -> str:
    """A YAML stream, one document per object."""
    return yaml.dump_all(objects, Dumper=_Dumper, sort_keys=False, width=100)


def secrets_path(value_files: list[str], given: str | None) -> Path:
    """--secrets, else workbench-secrets.yaml beside the first values file (or here)."""
    if given:
        return Path(given)
    folder = Path(value_files[0]).resolve().parent if value_files else Path.cwd()
    return folder / DEFAULT_SECRETS


def run_render(value_files: list[str], namespace: str | None, secrets_file: str | None) -> int:
    """`workbench kubernetes render`: the manifests on stdout; on bad values, the reason on
    stderr, nothing on stdout, and exit status 2."""
    try:
        overrides = {"namespace": namespace} if namespace else None
        values = load_values(value_files, overrides)
        secrets = SecretsFile(secrets_path(value_files, secrets_file))
        text = dump(render(values, secrets))
    except ValuesError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        saved = secrets.save()
    except OSError as e:
        print(f"error: cannot write the secrets file {secrets.path}: {e.strerror}", file=sys.stderr)
        return 1
    if saved:
        print(
            f"Generated {', '.join(secrets.generated)} into {secrets.path}: keep that file with "
            "your values (rendering again reads it, so nothing rotates).",
            file=sys.stderr,
        )
    sys.stdout.write(text)
    return 0
