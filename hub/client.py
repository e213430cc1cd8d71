"""The Python client of the platform API (and the hub API it stands on)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from urllib.parse import quote

import requests


class WorkbenchError(Exception):
    """The platform refused or failed a request; .status and .message say why."""

    def __init__(self, status: int, message: str):
        self.status = status
        self.message = message
        super().__init__(f"{message} (HTTP {status})")


class WorkbenchClient:
    """Calls the platform at url (e.g. http://127.0.0.1:8000) with an API token.

    The token comes from the hub's token page (/hub/token) or `workbench login`;
    it defaults to $WORKBENCH_TOKEN, the URL to $WORKBENCH_URL.
    """

    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 300):
        self.url = (url or os.environ.get("WORKBENCH_URL") or "http://127.0.0.1:8000").rstrip("/")
        self.token = token or os.environ.get("WORKBENCH_TOKEN", "")
        self.timeout = timeout
        self.session = requests.Session()
        if self.token:
            self.session.headers["Authorization"] = f"token {self.token}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/services/workbench/api"

    @property
    def hub_api_url(self) -> str:
        return f"{self.url}/hub/api"

    def _request(self, method: str, url: str, body=None, **kwargs):
        try:
            resp = self.session.request(
                method, url, json=body, timeout=kwargs.pop("timeout", self.timeout), **kwargs
            )
        except requests.ConnectionError as e:
            raise WorkbenchError(
                0, f"The platform at {self.url} is not reachable ({e}). Is it running (`make up`)?"
            ) from None
        if resp.status_code >= 400:
            try:
                message = resp.json().get("message") or resp.reason
            except ValueError:
                message = resp.text[:300] or resp.reason
            raise WorkbenchError(resp.status_code, message)
        if resp.status_code == 204 or not resp.content:
            return None
        return resp.json()

    def api(self, method: str, path: str, body=None, **kwargs):
        """Call the platform API at path (relative to /services/workbench/api/)."""
        return self._request(method, f"{self.api_url}/{path.lstrip('/')}", body, **kwargs)

    def hub(self, method: str, path: str, body=None, **kwargs):
        """Call JupyterHub's own API at path (relative to /hub/api/)."""
        return self._request(method, f"{self.hub_api_url}/{path.lstrip('/')}", body, **kwargs)

    # who am I

    def whoami(self) -> dict:
        return self.hub("GET", "user")

    def _user(self, user: str | None) -> str:
        return quote(user or self.whoami()["name"], safe="")

    # catalog

    def flavors(self) -> list[dict]:
        return self.api("GET", "flavors")

    def images(self) -> list[dict]:
        return self.api("GET", "images")

    # instances

    def instances(self, user: str | None = None) -> list[dict]:
        return self.api("GET", f"users/{self._user(user)}/instances")

    def instance(self, name: str, user: str | None = None) -> dict:
        return self.api("GET", f"users/{self._user(user)}/instances/{name}")

    def create_instance(
        self,
        name: str,
        *,
        image: str | None = None,
        flavor: str | None = None,
        storage_gib: int | None = None,
        description: str = "",
        start: bool = True,
        user: str | None = None,
        ssh: dict | None = None,
        auto_stop: dict | None = None,
    ) -> dict:
        """Create an instance (and start it unless start=False); ssh: {"enabled",
        "allowlist"}, auto_stop: {"idle_minutes", "max_hours"}."""
        body = {"name": name, "description": description, "start": start}
        for key, value in (
            ("image", image),
            ("flavor", flavor),
            ("storage_gib", storage_gib),
            ("ssh", ssh),
            ("auto_stop", auto_stop),
        ):
            if value is not None:
                body[key] = value
        return self.api("POST", f"users/{self._user(user)}/instances", body)

    def start_instance(self, name: str, user: str | None = None) -> dict:
        return self.api("POST", f"users/{self._user(user)}/instances/{name}/start")

    def stop_instance(self, name: str, user: str | None = None) -> dict:
        return self.api("POST", f"users/{self._user(user)}/instances/{name}/stop")

    def update_instance(self, name: str, user: str | None = None, **changes) -> dict:
        return self.api("PATCH", f"users/{self._user(user)}/instances/{name}", changes)

    def set_auto_stop(
        self,
        name: str,
        idle_minutes: float | None = None,
        max_hours: float | None = None,
        user: str | None = None,
    ) -> dict:
        """Change when an instance stops on its own (applies to a running one at once)."""
        current = self.instance(name, user).get("auto_stop") or {}
        auto_stop = dict(current)
        if idle_minutes is not None:
            auto_stop["idle_minutes"] = idle_minutes
        if max_hours is not None:
            auto_stop["max_hours"] = max_hours
        return self.update_instance(name, user, auto_stop=auto_stop)

    def extend_instance(self, name: str, minutes: float, user: str | None = None) -> dict:
        """Keep a running instance longer: counts as activity and adds minutes to its fixed
        run time, if it has one."""
        return self.api(
            "POST", f"users/{self._user(user)}/instances/{name}/extend", {"minutes": minutes}
        )

    def delete_instance(self, name: str, user: str | None = None) -> None:
        self.api("DELETE", f"users/{self._user(user)}/instances/{name}")

    # SSH: keys, and an instance's SSH access through the gateway

    def keys(self, user: str | None = None) -> list[dict]:
        return self.api("GET", f"users/{self._user(user)}/keys")

    def add_key(self, name: str, public_key: str, user: str | None = None) -> dict:
        body = {"name": name, "public_key": public_key}
        return self.api("POST", f"users/{self._user(user)}/keys", body)

    def generate_key(self, name: str, user: str | None = None) -> dict:
        """A new ed25519 key pair: the key's model with "private_key" (returned only now)."""
        return self.api("POST", f"users/{self._user(user)}/keys/generate", {"name": name})

    def rename_key(self, key_id: int, name: str, user: str | None = None) -> dict:
        return self.api("PATCH", f"users/{self._user(user)}/keys/{key_id}", {"name": name})

    def delete_key(self, key_id: int, user: str | None = None) -> None:
        self.api("DELETE", f"users/{self._user(user)}/keys/{key_id}")

    def instance_ssh(self, name: str, user: str | None = None) -> dict:
        """{enabled, allowlist, host, port, username, command, config} of an instance."""
        return self.api("GET", f"users/{self._user(user)}/instances/{name}/ssh")

    def set_ssh(
        self, name: str, enabled: bool, allowlist: list[str] | None = None, user: str | None = None
    ) -> dict:
        """Turn SSH on or off for an instance (applies at once, without a restart)."""
        ssh = {"enabled": enabled, "allowlist": list(allowlist or [])}
        return self.update_instance(name, user=user, ssh=ssh)

    def progress(self, name: str, user: str | None = None) -> Iterator[dict]:
        """Spawn progress events of an instance (from the hub's event stream)."""
        url = f"{self.hub_api_url}/users/{self._user(user)}/servers/{name}/progress"
        with self.session.get(url, stream=True, timeout=self.timeout) as resp:
            for line in resp.iter_lines(decode_unicode=True):
                if line and line.startswith("data:"):
                    yield json.loads(line[5:])

    # audit (administrators)

    def audit_events(self, **filters) -> list[dict]:
        """Audit events, newest first; filters: since, until, user, resource_type, resource,
        event, outcome, limit, offset."""
        params = {k: v for k, v in filters.items() if v is not None}
        return self.api("GET", "audit", params=params)

    def audit_export(self, **filters) -> str:
        """Audit events as JSON lines."""
        params = {k: v for k, v in filters.items() if v is not None}
        resp = self.session.get(
            f"{self.api_url}/audit", params={**params, "format": "jsonl"}, timeout=self.timeout
        )
        if resp.status_code >= 400:
            raise WorkbenchError(resp.status_code, resp.json().get("message", resp.reason))
        return resp.text

    def audit_verify(self) -> dict:
        return self.api("GET", "audit/verify")

    # saved images

    def save_instance(
        self,
        name: str,
        image: str,
        tag: str = "latest",
        description: str = "",
        user: str | None = None,
        wait: bool = False,
    ) -> dict:
        """Start saving a running instance as image:tag; the save's status (state "saving").

        wait=True: answer when the save has ended, its final status ("done"; a failed save
        raises WorkbenchError with the reason).
        """
        body = {"name": image, "tag": tag, "description": description}
        path = f"users/{self._user(user)}/instances/{name}/save"
        if not wait:
            return self.api("POST", path, body)
        status = self.api("POST", path + "?wait=true", body, timeout=max(self.timeout, 3600))
        if status["state"] == "failed":
            raise WorkbenchError(500, status["message"])
        return status

    def save_status(self, name: str, user: str | None = None) -> dict:
        """The current or last save of an instance: state saving, done or failed, progress."""
        return self.api("GET", f"users/{self._user(user)}/instances/{name}/save")

    def wait_saved(self, name: str, user: str | None = None, poll: float = 0.5, on_status=None):
        """Poll a save until it is done (its status) or failed (WorkbenchError)."""
        import time

        while True:
            status = self.save_status(name, user)
            if on_status:
                on_status(status)
            if status["state"] == "done":
                return status
            if status["state"] == "failed":
                raise WorkbenchError(500, status["message"])
            time.sleep(poll)

    def delete_image(self, image: str, tag: str, user: str | None = None) -> None:
        self.api("DELETE", f"users/{self._user(user)}/images/{image}/{tag}")

    def share_image(
        self,
        image: str,
        tag: str,
        users: list[str] | None = None,
        everyone: bool | None = None,
        replace: bool = True,
        remove: list[str] | None = None,
        user: str | None = None,
    ) -> dict:
        body: dict = {"users": users or []}
        if everyone is not None:
            body["everyone"] = everyone
        if remove:
            body["remove"] = remove
        method = "PUT" if replace else "PATCH"
        return self.api(method, f"users/{self._user(user)}/images/{image}/{tag}/shares", body)

    def push_image(self, image: str, tag: str, user: str | None = None) -> dict:
        return self.api("POST", f"users/{self._user(user)}/images/{image}/{tag}/push")

    def pull_image(
        self,
        ref: str,
        image: str | None = None,
        tag: str | None = None,
        user: str | None = None,
        base: str | None = None,
    ) -> dict:
        """Pull a saved image; `base` (its preset) only for an own image pushed elsewhere."""
        body = {"ref": ref}
        if image:
            body["name"] = image
        if tag:
            body["tag"] = tag
        if base:
            body["base"] = base
        return self.api("POST", f"users/{self._user(user)}/images/pull", body)

    # tokens

    def login(self, username: str, password: str) -> str:
        """Sign in with a password; sets and returns a new API token for this client."""
        s = requests.Session()
        try:
            s.get(f"{self.url}/hub/login", timeout=30)
            resp = s.post(
                f"{self.url}/hub/login",
                data={"username": username, "password": password, "_xsrf": s.cookies.get("_xsrf")},
                allow_redirects=False,
                timeout=30,
            )
        except requests.ConnectionError as e:
            raise WorkbenchError(0, f"The platform at {self.url} is not reachable ({e}).") from None
        if resp.status_code != 302 or "jupyterhub-session-id" not in s.cookies:
            raise WorkbenchError(
                403, f"Sign-in as {username!r} failed: wrong user name or password."
            )
        resp = s.post(
            f"{self.hub_api_url}/users/{quote(username, safe='')}/tokens",
            json={"note": "workbench CLI", "expires_in": 30 * 24 * 3600},
            headers={"X-XSRFToken": s.cookies.get("_xsrf")},
            timeout=30,
        )
        if resp.status_code >= 400:
            raise WorkbenchError(resp.status_code, f"Could not create a token: {resp.text[:200]}")
        self.token = resp.json()["token"]
        self.session.headers["Authorization"] = f"token {self.token}"
        return self.token
