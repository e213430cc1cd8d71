"""Online services: deploy model versions, call them, split traffic, keys, metrics.

    service = await client.services.create("mnist", predictors=[predictor("mnist", 1)])
    await service.wait_ready()
    await service.predict([[0.1, 0.2, 0.3, 0.4]])          # v1: instances -> predictions
    await service.infer({"x": [[0.1, 0.2, 0.3, 0.4]]})     # v2: the response's outputs
    await service.update(traffic={"1": 90, "2": 10})       # version 2 as a canary
    await service.promote()                                # version 2 takes all traffic
    key = await service.keys.create("ci")                  # {"key": "wbk_...", ...} once

Calls go through the service's stable URL (<platform>/services/workbench/inference/<owner>/
<name>) with the client's token, or with an access key given as key=.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import httpx

from ..errors import WorkbenchError
from . import Namespace, segment

if TYPE_CHECKING:
    from ..client import AsyncWorkbenchClient

# predictor fields a PATCH sends back as they are
PREDICTOR_FIELDS = (
    "model",
    "version",
    "owner",
    "weight",
    "flavor",
    "min_replicas",
    "max_replicas",
    "target_in_flight",
)


class ServiceFailed(WorkbenchError):
    """wait_ready() saw the service fail; .data is its JSON."""

    def __init__(self, data: dict):
        self.data = data
        reason = f": {data['reason']}" if data.get("reason") else ""
        super().__init__(409, f"Service {data.get('name')} {data.get('state')}{reason}")


def predictor(
    model: str,
    version: int,
    *,
    weight: int = 100,
    flavor: str | None = None,
    replicas: int | tuple[int, int] = 1,
    target_in_flight: int | None = None,
) -> dict:
    """One predictor of a service: a model version with its share of the traffic (weight,
    percent), flavor and replicas (a number, or (min, max) to scale between)."""
    if isinstance(replicas, (tuple, list)):
        low, high = replicas
    else:
        low = high = int(replicas)
    spec: dict[str, Any] = {
        "model": model,
        "version": int(version),
        "weight": int(weight),
        "min_replicas": int(low),
        "max_replicas": int(high),
    }
    if flavor is not None:
        spec["flavor"] = flavor
    if target_in_flight is not None:
        spec["target_in_flight"] = int(target_in_flight)
    return spec


def service_path(owner: str, name: str) -> str:
    return f"services/{segment(owner)}/{segment(name)}"


def _datatype(value) -> str:
    """The v2 datatype of a value's elements (numpy arrays: their dtype)."""
    dtype = getattr(value, "dtype", None)
    if dtype is not None:
        kind, size = dtype.kind, dtype.itemsize * 8
        if kind == "f":
            return f"FP{size}"
        if kind == "i":
            return f"INT{size}"
        if kind == "u":
            return f"UINT{size}"
        if kind == "b":
            return "BOOL"
        return "BYTES"
    while isinstance(value, (list, tuple)) and value:
        value = value[0]
    if isinstance(value, bool):
        return "BOOL"
    if isinstance(value, int):
        return "INT64"
    if isinstance(value, float):
        return "FP32"
    return "BYTES"


def _shape(value) -> list[int]:
    shape = getattr(value, "shape", None)
    if shape is not None:
        return [int(n) for n in shape]
    dims = []
    while isinstance(value, (list, tuple)):
        dims.append(len(value))
        if not value:
            break
        value = value[0]
    return dims


def _flat(value) -> list:
    if hasattr(value, "tolist"):
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        return [value]
    out: list = []
    for item in value:
        out.extend(_flat(item) if isinstance(item, (list, tuple)) else [item])
    return out


def tensor(name: str, value, datatype: str | None = None) -> dict:
    """A v2 input tensor from nested lists or a numpy array: name, shape, datatype, data."""
    return {
        "name": name,
        "shape": _shape(value),
        "datatype": datatype or _datatype(value),
        "data": _flat(value),
    }


class ServiceKeys:
    """A service's access keys: callers without a platform account send one as
    `Authorization: Bearer <key>` or `X-Workbench-Key: <key>`."""

    def __init__(self, service: Service):
        self._client = service._client
        self._service = service

    def __repr__(self) -> str:
        return f"<keys of {self._service!r}>"

    @property
    def _path(self) -> str:
        return f"{self._service._path}/keys"

    async def create(self, name: str) -> dict:
        """A new key: {"name", "prefix", "key"}; the key is shown this once."""
        return await self._client.api("POST", self._path, {"name": name})

    async def list(self) -> list[dict]:
        """The keys: name, prefix (the key's first characters), created, last_used."""
        return await self._client.api("GET", self._path)

    async def delete(self, name: str) -> None:
        """Revoke a key: calls with it are refused at once."""
        await self._client.api("DELETE", f"{self._path}/{segment(name)}")


class Service:
    """An online service as last seen: .owner, .name, .data (its JSON), .url, .keys.

    predict() and infer() call it; update() changes its predictors or traffic split;
    promote(), rollback(), start(), stop(), delete() act on it; metrics() and logs() watch it.
    """

    def __init__(self, client: AsyncWorkbenchClient, data: dict):
        self._client = client
        self.data = data
        self.owner: str = data["owner"]
        self.name: str = data["name"]
        self.keys = ServiceKeys(self)

    def __repr__(self) -> str:
        return f"<Service {self.owner}/{self.name} {self.state}>"

    @property
    def _path(self) -> str:
        return service_path(self.owner, self.name)

    @property
    def state(self) -> str:
        """deploying, running, stopped or failed (as last seen)."""
        return self.data.get("state", "")

    @property
    def reason(self) -> str:
        return self.data.get("reason") or ""

    @property
    def predictors(self) -> list[dict]:
        return list(self.data.get("predictors") or [])

    @property
    def url(self) -> str:
        """The stable URL callers use (v1 and v2 paths below it), through this client's
        platform address (the one the client reaches)."""
        base = self._client.api_url
        if base.endswith("/api"):
            base = base[: -len("/api")]
        return f"{base}/inference/{segment(self.owner)}/{segment(self.name)}"

    @property
    def model_name(self) -> str:
        """The model name of the protocol paths (/v2/models/<name>/infer)."""
        if self.data.get("model_name"):
            return self.data["model_name"]
        predictors = self.predictors
        return predictors[0]["model"] if predictors else self.name

    async def refresh(self) -> Service:
        """Read the service again; returns the service itself."""
        self.data = await self._client.api("GET", self._path)
        return self

    # --- calling -----------------------------------------------------------------------------
    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        key: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - seconds, as httpx's
    ) -> Any:
        """A request to the service (path below its URL: "v2/health/ready"), with the
        client's token or an access key; the answer's JSON. WorkbenchError on a refusal
        (the router's or the model server's message)."""
        url = f"{self.url}/{path.lstrip('/')}"
        # the router takes the token or key as a bearer credential
        credential = key or self._client.token
        headers = {"Authorization": f"Bearer {credential}"} if credential else {}
        client = self._client
        try:
            resp = await client.http.request(
                method,
                url,
                json=body,
                headers={**client.headers, **headers},
                timeout=client._timeout(timeout),
            )
        except httpx.TransportError as e:
            raise client.no_answer(url, e, timeout) from None
        if resp.status_code >= 300:
            try:
                detail = resp.json()
            except ValueError:
                detail = None
            # the model server's refusals (kserve's InvalidInput: a 400) are {"error": ...}
            if isinstance(detail, dict) and detail.get("error") and not detail.get("message"):
                raise WorkbenchError(resp.status_code, str(detail["error"]))
            raise client.error(method, url, resp)
        if not resp.content:
            return None
        try:
            return resp.json()
        except ValueError:
            return resp.text

    async def predict(
        self,
        data,
        *,
        key: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - seconds, as httpx's
    ):
        """Predictions for `data`: a list of instances (v1: the answer's "predictions"), a
        v1 body {"instances": [...]} (the answer's "predictions"), or a v2 request
        {"inputs": [...]} (the whole v2 answer)."""
        if isinstance(data, dict) and "inputs" in data:
            path = f"v2/models/{segment(self.model_name)}/infer"
            return await self.call("POST", path, data, key=key, timeout=timeout)
        body = data if isinstance(data, dict) else {"instances": list(_instances(data))}
        answer = await self.call(
            "POST", f"v1/models/{segment(self.model_name)}:predict", body, key=key, timeout=timeout
        )
        if isinstance(answer, dict) and "predictions" in answer:
            return answer["predictions"]
        return answer

    async def infer(
        self,
        inputs,
        *,
        outputs: list[str] | None = None,
        parameters: dict | None = None,
        request_id: str | None = None,
        key: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - seconds, as httpx's
    ) -> dict:
        """A v2 inference: inputs as v2 tensors [{"name", "shape", "datatype", "data"}], or
        {name: nested lists or numpy array} (shape and datatype from the values). The v2
        answer: {"model_name", "outputs": [{"name", "shape", "datatype", "data"}], ...}."""
        if isinstance(inputs, dict):
            tensors = [tensor(name, value) for name, value in inputs.items()]
        else:
            tensors = list(inputs)
        body: dict[str, Any] = {"inputs": tensors}
        if outputs:
            body["outputs"] = [{"name": name} for name in outputs]
        if parameters:
            body["parameters"] = parameters
        if request_id:
            body["id"] = request_id
        path = f"v2/models/{segment(self.model_name)}/infer"
        return await self.call("POST", path, body, key=key, timeout=timeout)

    # --- changing ----------------------------------------------------------------------------
    def _traffic(self, traffic: dict) -> list[dict]:
        """The predictors for a traffic split {version: weight} ("model:version" for another
        model): the current predictors with new weights, a version not among them added as
        a new predictor with the first's settings (a canary)."""
        current = [{k: p[k] for k in PREDICTOR_FIELDS if k in p} for p in self.predictors]
        if not current:
            raise WorkbenchError(400, f"Service {self.name} has no predictor to split from.")
        out = []
        for where, weight in traffic.items():
            model, sep, version = str(where).rpartition(":")
            model = model if sep else current[0]["model"]
            try:
                version = int(version)
            except ValueError:
                raise WorkbenchError(
                    400, f"traffic key {where!r} is not a version (2) or model:version."
                ) from None
            found = next(
                (p for p in current if p["model"] == model and p["version"] == version), None
            )
            spec = dict(found or {**current[0], "model": model, "version": version})
            spec["weight"] = int(weight)
            out.append(spec)
        return out

    async def update(
        self,
        *,
        traffic: dict | None = None,
        predictors: list[dict] | None = None,
        description: str | None = None,
        public: bool | None = None,
        scale_to_zero_seconds: float | None = None,
    ) -> Service:
        """Change the service: traffic {"1": 90, "2": 10} (versions of its model, or
        "model:version"; a new one starts as a canary), or predictors (the whole list, see
        predictor()); description; public."""
        body: dict[str, Any] = {}
        if traffic is not None and predictors is not None:
            raise WorkbenchError(400, "Give traffic or predictors, not both.")
        if traffic is not None:
            await self.refresh()
            body["predictors"] = self._traffic(traffic)
        elif predictors is not None:
            body["predictors"] = list(predictors)
        if description is not None:
            body["description"] = description
        if public is not None:
            body["public"] = bool(public)
        if scale_to_zero_seconds is not None:
            body["scale_to_zero_seconds"] = scale_to_zero_seconds
        self.data = await self._client.api("PATCH", self._path, body)
        return self

    async def _action(self, action: str) -> Service:
        answer = await self._client.api("POST", f"{self._path}/{action}")
        if isinstance(answer, dict) and answer.get("name") == self.name:
            self.data = answer
        else:
            await self.refresh()
        return self

    async def promote(self) -> Service:
        """The canary takes all traffic; the old predictor drains and goes."""
        return await self._action("promote")

    async def rollback(self) -> Service:
        """The canary goes; the stable predictor takes all traffic again."""
        return await self._action("rollback")

    async def start(self) -> Service:
        """Start a stopped service's replicas again."""
        return await self._action("start")

    async def stop(self) -> Service:
        """Stop every replica (the service and its keys stay)."""
        return await self._action("stop")

    async def delete(self) -> None:
        """Delete the service, its replicas and keys."""
        await self._client.api("DELETE", self._path)

    # --- watching ----------------------------------------------------------------------------
    async def metrics(self, format: str | None = None):  # noqa: A002 - the API's word
        """{"predictors": {"model:version": {requests, errors, p50_ms, p95_ms, p99_ms,
        in_flight, replicas}}, "series": [...]}; format="prometheus": the text format."""
        path = f"{self._path}/metrics"
        if format:
            return await self._client.api_text("GET", path, params={"format": format})
        return await self._client.api("GET", path)

    async def logs(self, replica: str | None = None) -> str:
        """A replica's log (default: the service's first)."""
        params = {"replica": replica} if replica else None
        return await self._client.api_text("GET", f"{self._path}/logs", params=params)

    async def wait_ready(
        self,
        timeout: float | None = 300,  # noqa: ASYNC109 - seconds, as Popen.wait(timeout)
        poll: float = 1.0,
    ) -> Service:
        """Wait until the service is running (every predictor with replicas has a ready one);
        ServiceFailed if it fails, TimeoutError after `timeout` seconds (None: no limit)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            await self.refresh()
            if self.state == "running":
                return self
            if self.state == "failed":
                raise ServiceFailed(self.data)
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(
                    f"Service {self.name} is still {self.state} after {timeout:g} s"
                    + (f" ({self.reason})" if self.reason else "")
                    + "."
                )
            delay = poll if deadline is None else min(poll, max(deadline - time.monotonic(), 0))
            await asyncio.sleep(delay)


def _instances(data):
    if hasattr(data, "tolist"):
        return data.tolist()
    return data


class Services(Namespace):
    """Online services: the user's own and those of their workspaces (by owner)."""

    async def create(
        self,
        name: str,
        *,
        predictors: list[dict] | None = None,
        model: str | None = None,
        version: int | None = None,
        flavor: str | None = None,
        replicas: int | tuple[int, int] = 1,
        target_in_flight: int | None = None,
        public: bool = False,
        description: str = "",
        workspace: str | None = None,
        scale_to_zero_seconds: float | None = None,
    ) -> Service:
        """Deploy a service: `predictors` (see predictor(); at most two, weights adding to
        100), or one `model` `version` with flavor and replicas. The Service, deploying."""
        if predictors is None:
            if model is None or version is None:
                raise WorkbenchError(400, "Give predictors, or a model and its version.")
            predictors = [
                predictor(
                    model,
                    version,
                    flavor=flavor,
                    replicas=replicas,
                    target_in_flight=target_in_flight,
                )
            ]
        body: dict[str, Any] = {
            "name": name,
            "description": description,
            "public": bool(public),
            "predictors": list(predictors),
        }
        if workspace is not None:
            body["workspace"] = workspace
        if scale_to_zero_seconds is not None:
            body["scale_to_zero_seconds"] = scale_to_zero_seconds
        return Service(self._client, await self._client.api("POST", "services", body))

    async def list(self, workspace: str | None = None) -> list[dict]:
        """The services the user sees (own, and their workspaces')."""
        params = {"workspace": workspace} if workspace else None
        return await self._client.api("GET", "services", params=params)

    async def get(self, name: str, owner: str | None = None) -> Service:
        """A service; owner default: the user."""
        owner = await self._client.user_name(owner)
        return Service(self._client, await self._client.api("GET", service_path(owner, name)))

    async def delete(self, name: str, owner: str | None = None) -> None:
        """Delete a service with its replicas and keys."""
        await self._client.api("DELETE", service_path(await self._client.user_name(owner), name))
