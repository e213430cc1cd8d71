"""Images on the container engine: committing instances, pushing to and pulling from registries.

Blocking docker-py calls; async callers run them with asyncio.to_thread.
"""

from __future__ import annotations

import base64
import json
import logging
import posixpath
import tarfile
import uuid
from collections.abc import Callable

import docker
from requests.exceptions import ConnectionError as RequestsConnectionError

from .saved import scan_archive

log = logging.getLogger(__name__)


class ImageEngineError(RuntimeError):
    """The engine or a registry refused or failed; the message says why and what to do."""


class RegistryError(ImageEngineError):
    """A registry is unreachable or refused the credentials."""


class SecretsInImage(ImageEngineError):
    """A save's new files hold secrets or Jupyter runtime files; the image is not kept."""


# Go's os.ModeDir, in the path stat the engine sends with an archive
MODE_DIR = 1 << 31


def _auth_header(auth: dict | None) -> dict:
    if not auth:
        return {}
    encoded = base64.urlsafe_b64encode(json.dumps(auth).encode()).decode()
    return {"X-Registry-Auth": encoded}


def registry_message(registry: str, error: str) -> str:
    """A registry failure in words, with what to do next."""
    lowered = error.lower()
    if "unauthorized" in lowered or "authentication required" in lowered or "denied" in lowered:
        return (
            f"The registry {registry} refused the credentials ({error}). Check "
            "registry_username and registry_password in the settings."
        )
    if "connection refused" in lowered or "no such host" in lowered or "timeout" in lowered:
        return (
            f"The registry {registry} is unreachable ({error}). Check registry_url and that "
            "the registry runs."
        )
    if "http response to https client" in lowered:
        return (
            f"The registry {registry} speaks plain HTTP ({error}). Set registry_insecure = true "
            "for it."
        )
    return f"The registry {registry} failed: {error}"


class EngineImages:
    """Image operations on one Docker Engine API (Docker, or Podman's service)."""

    def __init__(self, url: str, timeout: float = 3600, quick_timeout: float = 60):
        self.url = url
        # commits, pushes, pulls and image reads: as long as a large image takes
        self.client = docker.DockerClient(base_url=url, timeout=timeout)
        # everything else answers in seconds, or the engine is in trouble
        self.quick = docker.DockerClient(base_url=url, timeout=quick_timeout)
        self._podman: bool | None = None

    @property
    def is_podman(self) -> bool:
        if self._podman is None:
            try:
                components = self.quick.version().get("Components") or []
            except Exception:  # noqa: BLE001 - cannot tell: assume Docker
                components = []
            self._podman = any("podman" in c.get("Name", "").lower() for c in components)
        return self._podman

    def find_container(self, name_prefix: str, labels: dict[str, str]):
        """The running container with all these labels whose name starts with name_prefix."""
        filters = {"label": [f"{k}={v}" for k, v in labels.items()], "status": "running"}
        for container in self.quick.containers.list(filters=filters):
            # given several label filters, Podman lists what has any one of them
            has_all = all(container.labels.get(k) == v for k, v in labels.items())
            if container.name.startswith(name_prefix) and has_all:
                return container
        return None

    def container(self, container_id: str):
        """The running container of that id or name; None if it is gone or not running."""
        try:
            container = self.quick.containers.get(container_id)
        except docker.errors.NotFound:
            return None
        return container if container.status == "running" else None

    def inspect(self, ref: str) -> dict | None:
        try:
            return self.quick.api.inspect_image(ref)
        except docker.errors.ImageNotFound:
            return None

    def commit(
        self, container, repository: str, tag: str, *, changes: list[str], message: str
    ) -> dict:
        """Commit the container (an id, or a docker-py Container), paused for the copy, as
        repository:tag; the new image's inspection (Id, Size, Config)."""
        try:
            if isinstance(container, str):
                container = self.client.containers.get(container)
            else:  # on the long-call client, whichever client found it
                container = self.client.containers.prepare_model(container.attrs)
            image = container.commit(
                repository=repository, tag=tag, message=message, pause=True, changes=changes
            )
        except (docker.errors.APIError, RequestsConnectionError) as e:
            explanation = getattr(e, "explanation", None) or str(e)
            raise ImageEngineError(
                f"The engine failed to commit the instance: {explanation}"
            ) from e
        return image.attrs

    def changes(self, container) -> list[dict]:
        """The container's filesystem changes against its image: [{"Path", "Kind"}]."""
        try:
            return self.quick.api.diff(getattr(container, "id", container)) or []
        except (docker.errors.APIError, RequestsConnectionError) as e:
            explanation = getattr(e, "explanation", None) or str(e)
            raise ImageEngineError(
                f"The engine cannot list the instance's changes: {explanation}"
            ) from e

    def _archive(self, container_id: str, path: str):
        """The engine's response with a tar of path (stat in its header), or None."""
        api = self.client.api
        response = api._get(
            api._url("/containers/{0}/archive", container_id),
            params={"path": path},
            stream=True,
            headers={"Accept-Encoding": "identity"},
        )
        if response.status_code == 404:
            response.close()
            return None
        api._raise_for_status(response)
        return response

    def read_file(self, container, path: str, limit: int = 1 << 16) -> bytes | None:
        """A small file of a container (through the engine, not the container's programs);
        None if it cannot be read."""
        try:
            response = self._archive(getattr(container, "id", container), path)
        except (docker.errors.APIError, RequestsConnectionError):
            return None
        if response is None:
            return None
        try:
            with tarfile.open(fileobj=response.raw, mode="r|") as tar:
                for member in tar:
                    if member.isreg() and member.size <= limit:
                        return tar.extractfile(member).read()
                    return None
        except (tarfile.TarError, OSError):
            return None
        finally:
            response.close()
        return None

    def scan(
        self,
        image: str,
        roots: list[tuple[str, bool]],
        secrets: dict[bytes, str],
        name: str,
        limit: int = 20,
    ) -> list[tuple[str, str]]:
        """(path, why) of the runtime files and files holding a secret among `roots` (path,
        added) of an image, read from a container of it that never starts."""
        if not roots:
            return []
        found = []
        try:
            scanner = self.client.api.create_container(
                image, name=f"{name}-{uuid.uuid4().hex[:8]}", network_disabled=True
            )["Id"]
        except (docker.errors.APIError, RequestsConnectionError) as e:
            explanation = getattr(e, "explanation", None) or str(e)
            raise ImageEngineError(f"The engine cannot check the new image: {explanation}") from e
        try:
            for path, added in roots:
                response = self._archive(scanner, path)
                if response is None:
                    continue  # made after the commit: not in the image
                try:
                    stat = json.loads(
                        base64.b64decode(
                            response.headers.get("X-Docker-Container-Path-Stat") or "e30="
                        )
                    )
                    if not added and int(stat.get("mode") or 0) & MODE_DIR:
                        continue  # a modified folder: only its changed entries count
                    found += scan_archive(
                        response.raw, posixpath.dirname(path), secrets, limit - len(found)
                    )
                finally:
                    response.close()
                if len(found) >= limit:
                    break
        except (docker.errors.APIError, RequestsConnectionError, tarfile.TarError) as e:
            explanation = getattr(e, "explanation", None) or str(e)
            raise ImageEngineError(f"The engine cannot check the new image: {explanation}") from e
        finally:
            try:
                self.client.api.remove_container(scanner, force=True)
            except docker.errors.APIError as e:
                log.warning("could not remove the scanning container %s: %s", scanner, e)
        return found

    def remove(self, ref: str) -> bool:
        """Remove the image reference (the image itself once no other reference is left)."""
        try:
            self.quick.images.remove(ref, force=False)
            return True
        except docker.errors.NotFound:  # Podman's "image not known" is no ImageNotFound
            return False

    def tag(self, ref: str, repository: str, tag: str):
        self.quick.api.tag(ref, repository, tag)

    def _stream(self, response, on_event: Callable[[dict], None] | None) -> str:
        """Read a JSON progress stream; the last error message, or ""."""
        error = ""
        for event in self.client.api._stream_helper(response, decode=True):
            if event.get("error") or event.get("errorDetail"):
                error = event.get("error") or event["errorDetail"].get("message", "")
            elif on_event:
                on_event(event)
        return error

    def push(
        self,
        ref: str,
        *,
        auth: dict | None,
        insecure: bool,
        on_event: Callable[[dict], None] | None = None,
    ):
        """Push ref (named <registry>/<path>:<tag>) to its registry; RegistryError on failure."""
        repository, _, tag = ref.rpartition(":")
        registry = repository.split("/", 1)[0]
        params = {"tag": tag}
        if insecure:
            params["tlsVerify"] = "false"  # Podman; Docker treats 127.0.0.0/8 as insecure
        self._transfer(
            registry,
            lambda: self.client.api._post(
                self.client.api._url("/images/{0}/push", repository),
                params=params,
                headers=_auth_header(auth),
                stream=True,
            ),
            on_event,
        )

    def _transfer(self, registry: str, request, on_event):
        """Run a streamed push or pull request; RegistryError with the registry's words."""
        try:
            response = request()
            self.client.api._raise_for_status(response)
            error = self._stream(response, on_event)
        except docker.errors.APIError as e:
            error = e.explanation or str(e)
        except RequestsConnectionError as e:
            raise ImageEngineError(
                f"The container engine at {self.url} is not reachable: {e}"
            ) from e
        if error:
            raise RegistryError(registry_message(registry, error))

    def pull(self, ref: str, *, auth: dict | None, insecure: bool) -> str:
        """Pull ref from its registry; the image's id. RegistryError on failure."""
        repository, _, tag = ref.rpartition(":")
        registry = repository.split("/", 1)[0]

        def request():
            if self.is_podman:
                # Podman's Docker-compatible pull ignores tlsVerify; its own API honours it
                return self.client.api.post(
                    self.client.api.base_url + "/v4.0.0/libpod/images/pull",
                    params={"reference": ref, "tlsVerify": str(not insecure).lower()},
                    headers=_auth_header(auth),
                    stream=True,
                )
            return self.client.api._post(
                self.client.api._url("/images/create"),
                params={"fromImage": repository, "tag": tag},
                headers=_auth_header(auth),
                stream=True,
            )

        self._transfer(registry, request, None)
        info = self.inspect(ref)
        if info is None:
            raise RegistryError(f"The registry {registry} has no image {ref}.")
        return info["Id"]
