"""What the bundle's tests share: rendering values, finding objects, validating them."""

from __future__ import annotations

import base64
from pathlib import Path

import kubernetes_validate
import kubernetes_validate.utils

from deploy.bundle import render
from deploy.secrets import SecretsFile
from deploy.values import load_values

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "deploy" / "examples").glob("*.yaml"))
K8S_VERSION = "1.37.0"
assert K8S_VERSION in kubernetes_validate.utils.all_versions()
HUB_IMAGE = "registry.example.com/ai-workbench/hub:1.0.0"


def bundle(tmp_path, *files, secrets: str = "secrets.yaml", **overrides) -> list[dict]:
    """The manifests of the values files (and overrides) with the secrets file in tmp_path."""
    values = load_values([str(f) for f in files], overrides or None)
    store = SecretsFile(tmp_path / secrets)
    objects = render(values, store)
    store.save()
    return objects


def find(objects: list[dict], kind: str, name: str | None = None) -> dict:
    found = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''} in {[o['kind'] for o in objects]}"
    return found[0]


def secret_data(secret: dict) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def validate(obj: dict) -> None:
    """Strictly against the official schema of Kubernetes 1.37 (unknown fields are errors)."""
    assert kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
