"""The registry's pull secret, given to every pod the platform starts (default ServiceAccount)."""

from __future__ import annotations

import base64
import json

from .common import REGISTRY_SECRET, b64, metadata


def docker_config(values: dict) -> dict:
    """A .dockerconfigjson of the registry's credentials ({"auths": {}} without any)."""
    registry = values["registry"]
    auths = {}
    if registry["username"]:
        token = f"{registry['username']}:{registry['password']}"
        auths[registry["url"]] = {
            "username": registry["username"],
            "password": registry["password"],
            "auth": base64.b64encode(token.encode()).decode(),
        }
    return {"auths": auths}


def make_manifests(values: dict, namespace: str) -> list[dict]:
    """The pull Secret "workbench-registry" (kubernetes.io/dockerconfigjson), when there are
    credentials or the save agent needs it, and the namespace's default ServiceAccount
    naming it, so that instances, jobs and services' pods (which use that account) pull
    with it."""
    has_credentials = bool(values["registry"]["username"])
    if not has_credentials and not values["saveAgent"]["enabled"]:
        return []
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(REGISTRY_SECRET, namespace, "registry"),
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": b64(json.dumps(docker_config(values)))},
    }
    if not has_credentials:
        return [secret]
    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "default", "namespace": namespace},
        "imagePullSecrets": [{"name": REGISTRY_SECRET}],
    }
    return [secret, account]
