"""The async client: the platform API and JupyterHub's API on one httpx.AsyncClient."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal
from urllib.parse import quote, urlsplit

import httpx

from . import config as _config
from .errors import WorkbenchError
from .resources.audit import Audit
from .resources.batch import Batch
from .resources.datasets import Datasets
from .resources.experiments import Comparison, Experiments, Search
from .resources.flavors import Flavors
from .resources.gallery import Gallery
from .resources.hub import HubAPI
from .resources.images import Images
from .resources.instances import Instances
from .resources.jobs import Jobs
from .resources.keys import Keys
from .resources.models import Models
from .resources.quotas import Quotas
from .resources.services import Services
from .resources.tensorboards import TensorBoard, Tensorboards
from .resources.usage import Usage
from .resources.workspaces import Workspaces

# what a successful answer's body must be: JSON (else a 502), JSON or anything (None), text
Expect = Literal["json", "lenient", "text"]


def _cookie(jar: httpx.Cookies, name: str) -> str | None:
    """A cookie's value by name whatever its path (httpx's get() refuses duplicates)."""
    value = None
    for cookie in jar.jar:
        if cookie.name == name:
            value = cookie.value
    return value


def _why(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


# the platform's resources by attribute name: a feature adds one line here (and its module
# in resources/); the sync client and `import workbench` pick it up as it is
NAMESPACES = {
    "instances": Instances,
    "images": Images,
    "flavors": Flavors,
    "keys": Keys,
    "audit": Audit,
    "usage": Usage,
    "quotas": Quotas,
    "workspaces": Workspaces,
    "jobs": Jobs,
    "models": Models,
    "services": Services,
    "batch": Batch,
    "datasets": Datasets,
    "experiments": Experiments,
    "gallery": Gallery,
    "hub_api": HubAPI,
    "tensorboards": Tensorboards,
}


class AsyncWorkbenchClient:
    """The platform at `url` (e.g. http://127.0.0.1:8000), called with an API token.

    Without arguments it is configured from the environment (see workbench.config): outside
    an instance $WORKBENCH_URL and $WORKBENCH_TOKEN; inside one $WORKBENCH_API_URL,
    $JUPYTERHUB_API_URL, $JUPYTERHUB_API_TOKEN and $JUPYTERHUB_USER. api_url and hub_api_url
    override where the platform API (<url>/services/workbench/api) and JupyterHub's API
    (<url>/hub/api) are. `user` is the default user of calls that take one (else the token's
    own, asked once with whoami()).

    The resources are namespaces: client.instances, .images, .flavors, .keys, .audit,
    .usage, .quotas, .workspaces, .jobs, .models, .services, .batch, .datasets, .experiments,
    .gallery, .tensorboards, and .hub_api (JupyterHub's API, for services); client.search() and
    client.compare() call client.experiments, client.tensorboard() client.tensorboards.open().
    Every call raises WorkbenchError on a refusal or when no answer comes.

        async with AsyncWorkbenchClient() as client:
            for instance in await client.instances.list():
                print(instance["name"], instance["state"])
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        api_url: str | None = None,
        hub_api_url: str | None = None,
        user: str | None = None,
        timeout: float = 300.0,
        connect_timeout: float = 10.0,
        headers: dict[str, str] | None = None,
        verify: Any = True,
    ):
        resolved = _config.resolve(url, token, api_url=api_url, hub_api_url=hub_api_url, user=user)
        self.url = resolved.url
        self.api_url = resolved.api_url
        self.hub_api_url = resolved.hub_api_url
        self.user = resolved.user
        self._token = resolved.token
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        # sent with every request, besides Authorization
        self.headers: dict[str, str] = dict(headers or {})
        self.verify = verify
        self._http: httpx.AsyncClient | None = None
        self._http_pid = 0
        self._whoami_name: str | None = None
        # the resources (NAMESPACES): client.instances, client.images, ...
        for name, namespace in NAMESPACES.items():
            setattr(self, name, namespace(self))

    instances: Instances
    images: Images
    flavors: Flavors
    keys: Keys
    audit: Audit
    usage: Usage
    quotas: Quotas
    workspaces: Workspaces
    jobs: Jobs
    models: Models
    datasets: Datasets
    services: Services
    batch: Batch
    experiments: Experiments
    gallery: Gallery
    hub_api: HubAPI
    tensorboards: Tensorboards

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.api_url}>"

    @property
    def token(self) -> str:
        return self._token

    @token.setter
    def token(self, value: str):
        self._token = value or ""
        self._whoami_name = None

    # --- transport ------------------------------------------------------------------------

    @property
    def http(self) -> httpx.AsyncClient:
        """The httpx client, made on first use (in the event loop that uses it)."""
        if self._http is None or self._http_pid != os.getpid():
            # a forked child never shares its parent's connections
            self._http = httpx.AsyncClient(
                verify=self.verify,
                follow_redirects=False,
                limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
            )
            self._http_pid = os.getpid()
        return self._http

    def _timeout(self, limit: float | None) -> httpx.Timeout:
        """httpx's timeouts for a call: `limit` seconds (None: the client's timeout) to wait
        for each step of the answer, connect_timeout at most to connect."""
        total = self.timeout if limit is None else limit
        return httpx.Timeout(total, connect=min(self.connect_timeout, total))

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = dict(self.headers)
        if self._token:
            headers["Authorization"] = f"token {self._token}"
        if extra:
            headers.update(extra)
        return headers

    def _where(self, url: str) -> str:
        """Who a URL belongs to, for messages."""
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}" if parts.netloc else url
        if self.api_url and url.startswith(self.api_url):
            return f"The platform API at {self.api_url}"
        if self.hub_api_url and url.startswith(self.hub_api_url):
            return f"JupyterHub's API at {self.hub_api_url}"
        return f"The platform at {origin}"

    def no_answer(self, url: str, exc: Exception, limit: float | None = None) -> WorkbenchError:
        """The error for a request that got no answer."""
        where = self._where(url)
        if isinstance(exc, httpx.TimeoutException):
            seconds = self.timeout if limit is None else limit
            detail = f"no answer within {seconds:g} s"
            return WorkbenchError(0, f"{where} did not answer ({detail}).", detail=detail)
        detail = _why(exc)
        if isinstance(exc, httpx.UnsupportedProtocol):
            return WorkbenchError(0, f"{where}: not an http(s) URL ({detail})", detail=detail)
        if isinstance(exc, httpx.ConnectError):
            return WorkbenchError(
                0,
                f"{where} is not reachable ({detail}). Is it running (`make up`)?",
                detail=detail,
            )
        return WorkbenchError(0, f"{where} broke off its answer ({detail}).", detail=detail)

    def error(self, method: str, url: str, resp: httpx.Response) -> WorkbenchError:
        """The error for an answer with an error (or redirect) status."""
        status = resp.status_code
        if 300 <= status < 400:
            return WorkbenchError(
                status,
                f"{method} {url} was redirected to {resp.headers.get('location', '?')}: "
                "check the platform's URL.",
            )
        message = None
        if "json" in resp.headers.get("content-type", "") or resp.content[:1] in (b"{", b"["):
            try:
                data = resp.json()
            except ValueError:
                data = None
            if isinstance(data, dict) and data.get("message"):
                message = str(data["message"])
        if message is not None:
            return WorkbenchError(status, message)
        if status == 404:
            path = urlsplit(url).path
            return WorkbenchError(
                404, f"No such route: {method} {path} (an older platform?).", missing_route=True
            )
        text = ""
        if resp.headers.get("content-type", "").startswith("text/plain"):
            text = resp.text.strip()[:300]
        return WorkbenchError(status, text or resp.reason_phrase or f"HTTP {status}")

    async def request(
        self,
        method: str,
        url: str,
        body: Any = None,
        *,
        params: dict | None = None,
        limit: float | None = None,
        expect: Expect = "json",
        ok_404: bool = False,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """(status, data) of a call to an absolute URL; WorkbenchError on error statuses
        (a 404 is (404, None) with ok_404) and when no answer comes.

        data: the JSON of the answer (None if empty); with expect="lenient" None for a body
        that is not JSON, with expect="text" the body as text.
        """
        extra = dict(headers or {})
        content = None
        if body is not None:
            content = json.dumps(body)
            extra.setdefault("Content-Type", "application/json")
        try:
            resp = await self.http.request(
                method,
                url,
                content=content,
                params=params,
                headers=self._headers(extra),
                timeout=self._timeout(limit),
            )
        except httpx.TransportError as e:
            raise self.no_answer(url, e, limit) from None
        status = resp.status_code
        if status >= 300:
            if ok_404 and status == 404:
                return status, None
            raise self.error(method, url, resp)
        if status == 204 or not resp.content:
            return status, None
        if expect == "text":
            return status, resp.text
        try:
            return status, resp.json()
        except ValueError:
            if expect == "lenient":  # e.g. JupyterHub's text answers to starts
                return status, None
            raise WorkbenchError(
                502, f"{self._where(url)} answered with something other than JSON."
            ) from None

    async def api(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: dict | None = None,
        limit: float | None = None,
    ) -> Any:
        """Call the platform API at path (relative to .../services/workbench/api/)."""
        url = f"{self.api_url}/{path.lstrip('/')}"
        _, data = await self.request(method, url, body, params=params, limit=limit)
        return data

    async def api_text(
        self, method: str, path: str, *, params: dict | None = None, limit: float | None = None
    ) -> str:
        """A platform API answer as text (exports: JSON lines, CSV)."""
        url = f"{self.api_url}/{path.lstrip('/')}"
        _, data = await self.request(method, url, params=params, limit=limit, expect="text")
        return data or ""

    @asynccontextmanager
    async def api_stream(
        self,
        method: str,
        path: str,
        *,
        params: dict | None = None,
        limit: float | None = None,
    ) -> AsyncIterator[httpx.Response]:
        """A platform API answer to read as it comes (resp.aiter_lines(), .aiter_bytes()):
        followed logs, file downloads. `limit`: seconds to wait for each part of the answer
        (None: as long as the answer lasts). WorkbenchError on an error status, and when
        no answer comes or it breaks off while being read.
        """
        url = f"{self.api_url}/{path.lstrip('/')}"
        timeout = httpx.Timeout(limit, connect=min(self.connect_timeout, limit or float("inf")))
        try:
            async with self.http.stream(
                method, url, params=params, headers=self._headers(), timeout=timeout
            ) as resp:
                if resp.status_code >= 300:
                    await resp.aread()
                    raise self.error(method, url, resp)
                yield resp
        except httpx.TransportError as e:
            raise self.no_answer(url, e, limit) from None

    async def hub(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: dict | None = None,
        limit: float | None = None,
    ) -> Any:
        """Call JupyterHub's own API at path (relative to .../hub/api/)."""
        url = f"{self.hub_api_url}/{path.lstrip('/')}"
        _, data = await self.request(
            method, url, body, params=params, limit=limit, expect="lenient"
        )
        return data

    async def aclose(self):
        if self._http is not None and self._http_pid == os.getpid():
            await self._http.aclose()
        self._http = None

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.aclose()

    # --- who am I -------------------------------------------------------------------------

    async def whoami(self) -> dict:
        """The token's owner as JupyterHub describes it (name, admin, groups, scopes...)."""
        model = await self.hub("GET", "user")
        self._whoami_name = model.get("name") if isinstance(model, dict) else None
        return model

    async def user_name(self, user: str | None = None) -> str:
        """user, else the client's default user, else the token's owner."""
        if user:
            return user
        if self.user:
            return self.user
        if self._whoami_name is None:
            await self.whoami()
        return self._whoami_name or ""

    async def user_path(self, user: str | None = None) -> str:
        """users/<user> for API paths, the name quoted."""
        return f"users/{quote(await self.user_name(user), safe='')}"

    # --- the calls `workbench.<name>` offers besides the namespaces ------------------------

    async def search(self, source=None, **settings) -> Search:
        """Start a hyperparameter search: client.experiments.search()."""
        return await self.experiments.search(source, **settings)

    async def compare(self, runs=None, **kwargs) -> Comparison:
        """Runs side by side: client.experiments.compare()."""
        return await self.experiments.compare(runs, **kwargs)

    async def tensorboard(self, runs=None, **kwargs) -> TensorBoard:
        """Open TensorBoard over runs or a search: client.tensorboards.open()."""
        return await self.tensorboards.open(runs, **kwargs)

    # --- tokens ---------------------------------------------------------------------------

    @property
    def hub_url(self) -> str:
        """JupyterHub's own pages (<url>/hub), where users sign in."""
        return self.hub_api_url.removesuffix("/api")

    async def login(self, username: str, password: str, *, note: str = "workbench CLI") -> str:
        """Sign in with a password; sets and returns a new API token (30 days) for this client."""
        login_url = f"{self.hub_url}/login"
        async with httpx.AsyncClient(verify=self.verify, timeout=30) as browser:
            try:
                await browser.get(login_url)
                resp = await browser.post(
                    login_url,
                    data={
                        "username": username,
                        "password": password,
                        "_xsrf": _cookie(browser.cookies, "_xsrf") or "",
                    },
                )
            except httpx.TransportError as e:
                raise self.no_answer(login_url, e, 30) from None
            if resp.status_code != 302 or not _cookie(browser.cookies, "jupyterhub-session-id"):
                raise WorkbenchError(
                    403, f"Sign-in as {username!r} failed: wrong user name or password."
                )
            url = f"{self.hub_api_url}/users/{quote(username, safe='')}/tokens"
            try:
                resp = await browser.post(
                    url,
                    json={"note": note, "expires_in": 30 * 24 * 3600},
                    headers={"X-XSRFToken": _cookie(browser.cookies, "_xsrf") or ""},
                )
            except httpx.TransportError as e:
                raise self.no_answer(url, e, 30) from None
            if resp.status_code >= 400:
                error = self.error("POST", url, resp)
                raise WorkbenchError(error.status, f"Could not create a token: {error.message}")
        self.token = resp.json()["token"]
        return self.token
