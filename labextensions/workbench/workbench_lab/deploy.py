"""Models and services from this instance: register its files as a model, and relay the Deploy
panel's model, service and call requests."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from urllib.parse import quote

import httpx
from jupyter_server.auth.decorator import authorized
from tornado import web

from .platform import PlatformError
from .training import TrainingHandler, resolve_source

DEPLOY_UNAVAILABLE = "Models and services are not available on this platform version."
# what the register form may set, passed on to the platform as they are
MODEL_FIELDS = ("description", "workspace", "format", "image", "signature", "predictor", "command")
SERVICE_FIELDS = (
    "name",
    "description",
    "workspace",
    "public",
    "predictors",
    "scale_to_zero_seconds",
)
SERVICE_EDITS = ("description", "public", "predictors", "scale_to_zero_seconds")
# seconds to wait for the platform: a registration copies the files and hashes them, a
# deployment checks the image and the quota first
REGISTER_LIMIT = 300.0
DEPLOY_LIMIT = 120.0
ACTION_LIMIT = 90.0
# seconds a call to a service may take: a predictor scaled to zero starts a replica first
CALL_LIMIT = 150.0
# what a call's path below the service may hold: v2/models/m/infer, v1/models/m:predict
CALL_PATH = re.compile(r"^[A-Za-z0-9._~:@!$&'()*+,;=-]+(/[A-Za-z0-9._~:@!$&'()*+,;=-]+)*$")
CALL_METHODS = ("GET", "POST")
# the most of a service's answer the panel is shown
ANSWER_LIMIT = 2_000_000


def model_path(owner: str, name: str, *rest: str) -> str:
    """The platform API path of a model (or below it), the names quoted."""
    return "/".join(["models", quote(owner, safe=""), quote(name, safe=""), *rest])


def service_path(owner: str, name: str, *rest: str) -> str:
    """The platform API path of a service (or below it), the names quoted."""
    return "/".join(["services", quote(owner, safe=""), quote(name, safe=""), *rest])


def storage_relative(root_dir: str, storage_dir: str, path: str) -> str:
    """`path` (relative to the server's root, as the file browser names it) as a path of the
    instance's storage, the volume the platform copies it from; HTTPError 400 when it is
    outside the root, missing, or not on the storage. Blocking (it looks at the disk)."""
    local = resolve_source(root_dir, path)
    storage = Path(storage_dir).resolve()
    if local != storage and storage not in local.parents:
        raise web.HTTPError(
            400,
            f"{path.strip()} is not on this instance's storage ({storage}): only files kept "
            "there can be registered as a model. Move or copy them there first.",
        )
    if local == storage:
        return "."
    return local.relative_to(storage).as_posix()


def router_url(api_url: str, owner: str, name: str, path: str) -> str:
    """The service's stable URL as this instance reaches it (beside the platform API: .../api
    becomes .../inference/<owner>/<name>), with `path` below it."""
    base = api_url.rstrip("/")
    base = base[: -len("/api")] if base.endswith("/api") else base
    return f"{base}/inference/{quote(owner, safe='')}/{quote(name, safe='')}/{path}"


class DeployHandler(TrainingHandler):
    """A relay of the platform's models and services API with this instance's token."""

    @staticmethod
    def http_error(e: PlatformError) -> web.HTTPError:
        if e.missing_route:
            return web.HTTPError(501, DEPLOY_UNAVAILABLE)
        return web.HTTPError(e.code, e.message)

    async def model_body(self, body: dict, *, named: bool) -> dict:
        """A registration as the platform takes it: a storage source's path (the file
        browser's) becomes a path of this instance's storage."""
        model = {}
        if named:
            name = body.get("name")
            if not isinstance(name, str) or not name.strip():
                raise web.HTTPError(400, "Give the model a name (lower-case letters, digits, '-').")
            model["name"] = name.strip()
        for field in MODEL_FIELDS:
            value = body.get(field)
            if value is not None and value != "":
                model[field] = value
        source = body.get("source")
        if not isinstance(source, dict) or not source.get("kind"):
            raise web.HTTPError(
                400,
                "Give the model's source: files of this instance ({kind: storage, path}), a "
                "job's output ({kind: job, job, version, path}) or an image.",
            )
        source = dict(source)
        if source["kind"] == "storage" and not source.get("instance"):
            if not self.platform.instance:
                raise web.HTTPError(
                    400, "This server is not an ai-workbench instance: it has no storage."
                )
            source["instance"] = self.platform.instance
            source["path"] = await asyncio.to_thread(
                storage_relative,
                self.contents_manager.root_dir,
                self.extensionapp.storage_path,
                source.get("path"),
            )
        model["source"] = source
        return model


class OptionsHandler(DeployHandler):
    """What the forms start from: this instance, its owner, the flavors, the storage folder."""

    @web.authenticated
    @authorized
    async def get(self):
        platform = self.platform
        flavors = await self.call(platform.flavors())
        self.write_json(
            {
                "instance": platform.instance,
                "owner": platform.user,
                "flavors": flavors,
                "work_folder": self.work_folder(),
            }
        )


class ModelsHandler(DeployHandler):
    """GET: the models the user may see. POST: register one (files of this instance, a job's
    output, or an image)."""

    @web.authenticated
    @authorized
    async def get(self):
        params = {k: self.get_argument(k) for k in ("workspace",) if self.get_argument(k, "")}
        self.write_json(await self.api("GET", "models", params=params or None))

    @web.authenticated
    @authorized
    async def post(self):
        model = await self.model_body(self.json_body(), named=True)
        self.log.info("workbench_lab: registering model %s from %s", model["name"], model["source"])
        result = await self.api("POST", "models", model, limit=REGISTER_LIMIT)
        self.write_json(result, status=201)


class ModelHandler(DeployHandler):
    @web.authenticated
    @authorized
    async def get(self, owner, name):
        self.write_json(await self.api("GET", model_path(owner, name)))

    @web.authenticated
    @authorized
    async def patch(self, owner, name):
        body = self.json_body()
        edits = {k: body[k] for k in ("description",) if k in body}
        self.write_json(await self.api("PATCH", model_path(owner, name), edits))

    @web.authenticated
    @authorized
    async def delete(self, owner, name):
        await self.api("DELETE", model_path(owner, name))
        self.set_status(204)
        self.finish()


class ModelVersionsHandler(DeployHandler):
    """A new version of a model, from the same kinds of source."""

    @web.authenticated
    @authorized
    async def post(self, owner, name):
        version = await self.model_body(self.json_body(), named=False)
        path = model_path(owner, name, "versions")
        result = await self.api("POST", path, version, limit=REGISTER_LIMIT)
        self.write_json(result, status=201)


class ModelVersionHandler(DeployHandler):
    @web.authenticated
    @authorized
    async def get(self, owner, name, version):
        self.write_json(await self.api("GET", model_path(owner, name, "versions", version)))

    @web.authenticated
    @authorized
    async def delete(self, owner, name, version):
        await self.api("DELETE", model_path(owner, name, "versions", version))
        self.set_status(204)
        self.finish()


class ServicesHandler(DeployHandler):
    """GET: the services the user may see. POST: deploy model versions as a service."""

    @web.authenticated
    @authorized
    async def get(self):
        params = {k: self.get_argument(k) for k in ("workspace",) if self.get_argument(k, "")}
        self.write_json(await self.api("GET", "services", params=params or None))

    @web.authenticated
    @authorized
    async def post(self):
        body = self.json_body()
        service = {k: body[k] for k in SERVICE_FIELDS if body.get(k) is not None}
        if not service.get("name"):
            raise web.HTTPError(400, "Give the service a name (lower-case letters, digits, '-').")
        if not service.get("predictors"):
            raise web.HTTPError(400, "Give the model version to deploy.")
        result = await self.api("POST", "services", service, limit=DEPLOY_LIMIT)
        self.write_json(result, status=201)


class ServiceHandler(DeployHandler):
    """A service: GET, PATCH (traffic split, a canary, description, public), DELETE."""

    @web.authenticated
    @authorized
    async def get(self, owner, name):
        self.write_json(await self.api("GET", service_path(owner, name)))

    @web.authenticated
    @authorized
    async def patch(self, owner, name):
        body = self.json_body()
        edits = {k: body[k] for k in SERVICE_EDITS if k in body}
        if not edits:
            raise web.HTTPError(400, f"Nothing to change: send one of {', '.join(SERVICE_EDITS)}.")
        path = service_path(owner, name)
        self.write_json(await self.api("PATCH", path, edits, limit=DEPLOY_LIMIT))

    @web.authenticated
    @authorized
    async def delete(self, owner, name):
        await self.api("DELETE", service_path(owner, name), limit=ACTION_LIMIT)
        self.set_status(204)
        self.finish()


class ServiceActionHandler(DeployHandler):
    """POST promote, rollback, start or stop."""

    @web.authenticated
    @authorized
    async def post(self, owner, name, action):
        path = service_path(owner, name, action)
        self.write_json(await self.api("POST", path, limit=ACTION_LIMIT))


class ServiceMetricsHandler(DeployHandler):
    @web.authenticated
    @authorized
    async def get(self, owner, name):
        self.write_json(await self.api("GET", service_path(owner, name, "metrics")))


class ServiceCallHandler(DeployHandler):
    """Call a service from the panel: the request goes to its stable URL with this instance's
    token; the answer is {status, body, elapsed_ms}, whatever the status (the model's own
    400s are what the user needs to see)."""

    @web.authenticated
    @authorized
    async def post(self, owner, name):
        body = self.json_body()
        method = str(body.get("method") or "POST").upper()
        if method not in CALL_METHODS:
            raise web.HTTPError(400, f"method must be one of {', '.join(CALL_METHODS)}.")
        path = body.get("path")
        if not isinstance(path, str) or not CALL_PATH.match(path.strip().lstrip("/")):
            raise web.HTTPError(
                400,
                "Give the path below the service, e.g. v2/models/<model>/infer or "
                "v1/models/<model>:predict.",
            )
        path = path.strip().lstrip("/")
        if ".." in path.split("/"):
            raise web.HTTPError(400, "The path must stay below the service.")
        platform = self.platform
        # no configured platform: the client's own 503 message
        await self.call(platform.call(asyncio.sleep(0)))
        url = router_url(platform.url, owner, name, path)
        headers = {"Authorization": f"Bearer {platform.token}"}
        content = None
        if method == "POST":
            content = json.dumps(body.get("body", {}))
            headers["Content-Type"] = "application/json"
        started = time.monotonic()
        try:
            resp = await platform.client.http.request(
                method,
                url,
                content=content,
                headers=headers,
                timeout=httpx.Timeout(CALL_LIMIT, connect=5.0),
            )
        except httpx.TransportError as e:
            raise web.HTTPError(
                502,
                f"The service {owner}/{name} did not answer at {url} "
                f"({type(e).__name__}: {e or 'no detail'}). Is it running?",
            ) from None
        elapsed = round((time.monotonic() - started) * 1000, 1)
        text = resp.text[:ANSWER_LIMIT]
        try:
            answer = json.loads(text) if text else None
        except ValueError:
            answer = text
        self.log.info(
            "workbench_lab: %s %s/%s/%s answered %s in %s ms",
            method,
            owner,
            name,
            path,
            resp.status_code,
            elapsed,
        )
        self.write_json({"status": resp.status_code, "body": answer, "elapsed_ms": elapsed})


def routes() -> list[tuple[str, type]]:
    """The extension's model and service routes under <base_url>/workbench/deploy/."""
    model = r"/workbench/deploy/models/([^/]+)/([^/]+)"
    service = r"/workbench/deploy/services/([^/]+)/([^/]+)"
    return [
        (r"/workbench/deploy/options", OptionsHandler),
        (r"/workbench/deploy/models", ModelsHandler),
        (model, ModelHandler),
        (model + r"/versions", ModelVersionsHandler),
        (model + r"/versions/(\d+)", ModelVersionHandler),
        (r"/workbench/deploy/services", ServicesHandler),
        (service, ServiceHandler),
        (service + r"/(promote|rollback|start|stop)", ServiceActionHandler),
        (service + r"/metrics", ServiceMetricsHandler),
        (service + r"/call", ServiceCallHandler),
    ]
