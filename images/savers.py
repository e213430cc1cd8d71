"""Saving a running instance as an image: one interface, an implementation per backend.

`ImageSaver` is what the platform calls; `make_saver(backend, ...)` picks the implementation, so
code above it never asks which backend it runs on:

- `EngineSaver` (Docker/Podman): a paused commit through the engine's API, the preset's
  configuration restored, and the image refused whole if its new files hold a secret.
- `NodeAgentImageSaver` (Kubernetes): the node agent on the instance's node commits the
  container and pushes it to the registry every node pulls from (images/node_agent/).
- `UnavailableSaver`: this installation cannot save yet; says what to set up.
"""

from __future__ import annotations

import abc
import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field

import docker
from requests.exceptions import ConnectionError as RequestsConnectionError

from .node_agent import DEFAULT_PORT as AGENT_PORT
from .node_agent.client import AgentError, NodeAgentSaver
from .registry import EngineImages, ImageEngineError
from .saved import (
    MIN_SECRET_LENGTH,
    environment_secrets,
    make_commit_changes,
    saved_repository,
    scan_roots,
)

log = logging.getLogger(__name__)

# progress(step, percent, message): where a save stands, for its status
Progress = Callable[[str, int, str], None]


class SaveError(RuntimeError):
    """A save failed; the message says why and what to do next."""


class SaveUnavailable(SaveError):
    """This installation cannot save instances; the message says what to set up."""


@dataclass(frozen=True)
class SaveSource:
    """The running instance a save copies."""

    user: str
    instance: str
    # the spawner's state: the container's id ("object_id", engine), the pod's name and
    # namespace ("pod_name", "namespace", Kubernetes)
    state: dict = field(default_factory=dict)
    # the preset image the instance runs on (a save restores its configuration)
    base_ref: str = ""


@dataclass(frozen=True)
class SaveResult:
    """What a save made."""

    image_id: str  # the engine's image id, or the registry's digest
    size: int  # bytes, the whole image
    added_size: int  # bytes over the preset image
    pushed_ref: str = ""  # where the save pushed the image (empty: kept where it was made)


class ImageSaver(abc.ABC):
    """Saves a running instance as an image; the same calls on every backend."""

    @abc.abstractmethod
    def repository(self, owner: str, name: str) -> str:
        """Where owner's image `name` is saved (no tag); SaveUnavailable if nowhere."""

    @abc.abstractmethod
    async def commit(
        self,
        source: SaveSource,
        repository: str,
        tag: str,
        labels: dict[str, str],
        progress: Progress,
    ) -> SaveResult:
        """Save the instance as repository:tag. SaveError with the reason if it fails, and
        then nothing of it is left behind."""

    @abc.abstractmethod
    async def discard(self, ref: str) -> bool:
        """Remove the image the platform keeps under ref (a saved image deleted, or a save
        that failed after its commit); False if there was none. SaveError if refused."""

    async def discard_late(
        self, ref: str, abandoned: Callable[[], Awaitable[bool]], seconds: float = 600
    ) -> bool:
        """After a restart interrupted a save: remove its image should the backend still
        finish it within `seconds`, as long as abandoned() holds; True if one was removed.

        By default nothing can appear later where discard() reaches.
        """
        return False


# --- the container engine -------------------------------------------------------------------


class EngineSaver(ImageSaver):
    """Saves through a Docker Engine API (Docker, or Podman's service): the instance pauses
    while its files are copied, the image gets the preset's command, user and environment back
    (none of the instance's tokens), and a new file holding a secret refuses the save."""

    def __init__(
        self,
        engine_url: str,
        *,
        registry: str,
        namespace: str,
        container_prefix: str,
        work_dir: str,
        platform_secrets: dict[str, str] | None = None,
        timeout: float = 3600,
        calls: Executor | None = None,
        transfers: Executor | None = None,
    ):
        self.engine_url = engine_url
        self.registry = registry
        self.namespace = namespace
        self.container_prefix = container_prefix
        self.work_dir = work_dir
        # {value: what it is} of the platform's own secrets, which no image may hold
        self.platform_secrets = {
            value: what
            for value, what in (platform_secrets or {}).items()
            if value and len(value) >= MIN_SECRET_LENGTH
        }
        self.timeout = timeout
        # blocking docker-py calls in threads, never the loop's default pool: quick ones
        # (inspect, diff, remove) apart from the long ones (commit, reading the image)
        self.calls = calls or ThreadPoolExecutor(4, thread_name_prefix="workbench-engine")
        self.transfers = transfers or ThreadPoolExecutor(2, thread_name_prefix="workbench-save")
        self._engine: EngineImages | None = None
        self._base_info: dict[str, tuple[float, dict]] = {}  # preset inspections, by ref
        self._containers: dict[str, dict] = {}  # instances' containers' inspections, by id

    async def _call(self, fn, *args, **kwargs):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.calls, functools.partial(fn, *args, **kwargs))

    async def _transfer(self, fn, *args, **kwargs):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.transfers, functools.partial(fn, *args, **kwargs))

    async def images(self) -> EngineImages:
        """The engine's client, made on first use (making it asks the engine its version)."""
        if self._engine is None:
            try:
                engine = await self._call(EngineImages, self.engine_url, timeout=self.timeout)
            except (docker.errors.DockerException, RequestsConnectionError) as e:
                raise SaveError(
                    f"The container engine at {self.engine_url} is not reachable: {e}"
                ) from e
            self._engine = self._engine or engine
        return self._engine

    def repository(self, owner: str, name: str) -> str:
        return saved_repository(self.registry, self.namespace, owner, name)

    async def _container(self, engine: EngineImages, source: SaveSource):
        """The instance's running container: by the id the spawner keeps (its configuration,
        fixed for the container's life, inspected once), else by its labels."""
        container_id = source.state.get("object_id")
        if not container_id:
            return await self._call(
                engine.find_container,
                f"{self.container_prefix}-",
                {"ai-workbench.user": source.user, "ai-workbench.instance": source.instance},
            )
        attrs = self._containers.get(container_id)
        if attrs is not None:
            return engine.client.containers.prepare_model(attrs)
        container = await self._call(engine.container, container_id)
        if container is not None:
            if len(self._containers) >= 256:
                self._containers.pop(next(iter(self._containers)))
            self._containers[container_id] = container.attrs
        return container

    async def _base_inspection(self, engine: EngineImages, ref: str, max_age: float = 300):
        """The preset image's inspection, kept a few minutes (presets change with rebuilds)."""
        now = time.monotonic()
        cached = self._base_info.get(ref)
        if cached and now - cached[0] < max_age:
            return cached[1]
        info = await self._call(engine.inspect, ref)
        if info is not None:
            self._base_info[ref] = (now, info)
        return info

    async def commit(self, source, repository, tag, labels, progress) -> SaveResult:
        engine = await self.images()
        progress("container", 5, "Finding the instance's container")
        try:
            container, base_info = await asyncio.gather(
                self._container(engine, source), self._base_inspection(engine, source.base_ref)
            )
            if container is None:
                raise SaveError(
                    f"Instance {source.instance!r} has no running container; start it and "
                    "save again."
                )
            if base_info is None:
                raise SaveError(f"The preset image {source.base_ref} is not on this machine.")
            changes = make_commit_changes(base_info["Config"], container.attrs["Config"], labels)
            before = await self._call(engine.changes, container)
        except ImageEngineError as e:
            raise SaveError(str(e)) from e
        except (docker.errors.DockerException, RequestsConnectionError) as e:
            explanation = getattr(e, "explanation", None) or str(e)
            raise SaveError(
                f"The engine cannot find the instance's container: {explanation}"
            ) from e
        progress("commit", 20, "Committing the instance's files (it pauses while they are copied)")
        ref = f"{repository}:{tag}"
        try:
            info = await self._transfer(
                engine.commit,
                container,
                repository,
                tag,
                changes=changes,
                message=f"saved from instance {source.instance} of {source.user}",
            )
            await self._check_secrets(engine, container, info["Id"], before, progress)
        except Exception as e:
            self._containers.pop(source.state.get("object_id"), None)
            # the engine may have written the image before it failed: nothing stays
            try:
                await self._call(engine.remove, ref)
            except Exception as cleanup:  # noqa: BLE001 - keep the save's error
                log.warning("could not remove the failed save's image %s: %s", ref, cleanup)
            if isinstance(e, ImageEngineError):
                raise SaveError(str(e)) from e
            raise
        size = int(info.get("Size") or 0)
        added = max(size - int(base_info.get("Size") or 0), 0)
        return SaveResult(image_id=info["Id"], size=size, added_size=added)

    async def _check_secrets(self, engine, container, image_id: str, before, progress):
        """Refuse a commit whose new files hold a secret the platform knows for the instance
        (its tokens, its Jupyter cookie secret, the platform's own) or Jupyter runtime files.

        The running server needs its runtime files, so nothing is deleted before the commit:
        the new image is checked, file by file of the instance's changes, and refused whole.
        """
        progress("scan", 75, "Checking the image's new files for secrets")
        config = container.attrs["Config"]
        env = dict(e.split("=", 1) for e in config.get("Env") or [] if "=" in e)
        secrets = dict(self.platform_secrets)
        secrets.update(environment_secrets(config.get("Env"), "the instance"))
        home = env.get("HOME") or "/home/jovyan"
        for folder in {env.get("JUPYTER_RUNTIME_DIR"), f"{home}/.local/share/jupyter/runtime"}:
            if folder:
                cookie = await self._call(
                    engine.read_file, container, f"{folder}/jupyter_cookie_secret"
                )
                if cookie and len(cookie.strip()) >= MIN_SECRET_LENGTH:
                    secrets[cookie.strip().decode(errors="replace")] = (
                        "the instance's Jupyter cookie secret"
                    )
        after = await self._call(engine.changes, container)
        found = await self._transfer(
            engine.scan,
            image_id,
            scan_roots(before + after),
            {k.encode(): v for k, v in secrets.items()},
            f"{self.container_prefix}-scan",
        )
        if found:
            listed = "; ".join(f"{path} ({why})" for path, why in found)
            raise SaveError(
                f"Not saved: the instance's new files would put secrets into the image, where "
                f"everyone it is shared with could read them: {listed}. Delete these files (or "
                f"move them into {self.work_dir}, which is never saved) and save again."
            )

    async def exists(self, ref: str) -> bool:
        """Whether the engine has an image named ref."""
        engine = await self.images()
        try:
            return await self._call(engine.inspect, ref) is not None
        except (docker.errors.DockerException, RequestsConnectionError) as e:
            raise SaveError(f"The engine cannot inspect {ref}: {e}") from e

    async def discard(self, ref: str) -> bool:
        engine = await self.images()
        try:
            return await self._call(engine.remove, ref)
        except (docker.errors.DockerException, RequestsConnectionError) as e:
            explanation = getattr(e, "explanation", None) or str(e)
            raise SaveError(f"The engine cannot remove {ref}: {explanation}") from e

    async def discard_late(self, ref, abandoned, seconds=600, interval: float = 2) -> bool:
        """The engine finishes a commit it began even when the platform is gone: watch for
        the image and remove it."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await asyncio.sleep(interval)
            if not await abandoned():
                return False
            if await self.exists(ref):
                return await self.discard(ref)
        return False


# --- the node agent (Kubernetes) ------------------------------------------------------------


class NodeAgentImageSaver(ImageSaver):
    """Saves on Kubernetes: the agent on the instance's node commits its container and pushes
    the image to the registry every node pulls from.

    nerdctl's commit keeps the container image's configuration (command, environment,
    labels), not the pod's, so no token is stored; it cannot add the saved-image labels.
    """

    def __init__(
        self,
        *,
        token: str,
        registry_url: str,
        namespace: str,
        agent_namespace: str = "",
        agent_port: int = AGENT_PORT,
        core=None,
    ):
        self.registry_url = registry_url.rstrip("/")
        self.namespace = namespace
        self.agent = NodeAgentSaver(core, token=token, namespace=agent_namespace, port=agent_port)

    def repository(self, owner: str, name: str) -> str:
        if not self.registry_url:
            raise SaveUnavailable(
                "Saving on Kubernetes pushes the image to a registry every node can pull "
                "from: set registry_url (and registry_username, registry_password) in the "
                "settings file."
            )
        return saved_repository(self.registry_url, self.namespace, owner, name)

    async def commit(self, source, repository, tag, labels, progress) -> SaveResult:
        ref = f"{repository}:{tag}"
        try:
            result = await self.agent.save(
                source.state,
                ref,
                labels=labels,
                user=source.user,
                instance=source.instance,
                progress=progress,
            )
        except AgentError as e:  # the agent removed what it committed
            raise SaveError(str(e)) from e
        size = int(result.get("size") or 0)
        # the agent cannot tell the preset's share of the layers: all of it counts
        return SaveResult(image_id=result["digest"], size=size, added_size=size, pushed_ref=ref)

    async def discard(self, ref: str) -> bool:
        """Nothing to remove here: the agent removes a failed save's image from its node, and
        the registry's copy stays until a save of the same name replaces it."""
        return False


# --- none -----------------------------------------------------------------------------------


class UnavailableSaver(ImageSaver):
    """Saving is not set up on this installation; every save is refused with `reason`."""

    def __init__(self, reason: str):
        self.reason = reason

    def repository(self, owner: str, name: str) -> str:
        raise SaveUnavailable(self.reason)

    async def commit(self, source, repository, tag, labels, progress) -> SaveResult:
        raise SaveUnavailable(self.reason)

    async def discard(self, ref: str) -> bool:
        return False


def make_saver(
    backend: str,
    *,
    namespace: str,
    engine_url: str = "",
    image_registry: str = "",
    container_prefix: str = "workbench",
    work_dir: str = "/home/jovyan/work",
    platform_secrets: dict[str, str] | None = None,
    timeout: float = 3600,
    calls: Executor | None = None,
    transfers: Executor | None = None,
    registry_url: str = "",
    agent_token: str = "",
    agent_namespace: str = "",
    agent_port: int = AGENT_PORT,
    core=None,
) -> ImageSaver:
    """The saver of a backend ("docker" or "kubernetes").

    namespace: the repository path saved images go under (e.g. "workbench-saved").
    Engine: engine_url, image_registry (the local images' registry prefix), container_prefix
    (the instances' and the scanning container's names), work_dir (never saved),
    platform_secrets ({value: what}), timeout (seconds a commit may take), and the thread
    pools for quick engine calls and long ones. Kubernetes: registry_url (every node pulls
    from it), agent_token, agent_namespace (default: the hub's), agent_port, and core (a
    kubernetes_asyncio CoreV1Api; default: the pod's service account).
    """
    if backend == "docker":
        if not engine_url:
            return UnavailableSaver(
                "Saving images needs a container engine: set docker_host in the settings file "
                "(or run the hub where Podman or Docker is)."
            )
        return EngineSaver(
            engine_url,
            registry=image_registry,
            namespace=namespace,
            container_prefix=container_prefix,
            work_dir=work_dir,
            platform_secrets=platform_secrets,
            timeout=timeout,
            calls=calls,
            transfers=transfers,
        )
    if backend == "kubernetes":
        if not agent_token:
            return UnavailableSaver(
                "Saving on Kubernetes needs the node agent: deploy it (see the README, "
                "'Saved images') and set save_agent_token."
            )
        return NodeAgentImageSaver(
            token=agent_token,
            registry_url=registry_url,
            namespace=namespace,
            agent_namespace=agent_namespace,
            agent_port=agent_port,
            core=core,
        )
    raise ValueError(f"Unknown backend {backend!r}: 'docker' or 'kubernetes'.")
