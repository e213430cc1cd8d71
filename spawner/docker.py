"""The embedded spawner: instances as containers on the Docker Engine API (Docker or Podman)."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker
from dockerspawner import DockerSpawner
from requests.exceptions import ConnectionError as RequestsConnectionError
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from traitlets import Bool, Float, Integer, Unicode, default

from .base import InstanceSpawnerMixin
from .capacity import MachineCapacity
from .container import (
    LABEL_PREFIX,
    make_container_spec,
    make_network_name,
    make_volume_name,
    user_folder_name,
)
from .flavors import format_bytes
from .isolation import enforce
from .lifecycle import LifecycleStateMixin, exit_reason
from .metering import MeteringMixin
from .oom import says_oom, wrapped
from .storage_files import LABEL as STORAGE_LABEL
from .storage_files import MOUNT_OPTIONS, make_storage_file, storage_file

# how often the spawn form lists the engine's images before doing without the list
LIST_IMAGES_ATTEMPTS = 3


class EngineError(web.HTTPError):
    """The container engine cannot be reached (HTTP 503); the message says what to do."""

    def __init__(self, message: str):
        super().__init__(503, message)


class WorkbenchDockerSpawner(
    InstanceSpawnerMixin, LifecycleStateMixin, MeteringMixin, DockerSpawner
):
    """Run each instance as a container with its flavor's limits and its own volume."""

    run_as = Unicode(
        "1000:100",
        help="""User (uid:gid) the instance's processes run as; never root.
        Default "1000:100", the images' jovyan user.""",
    ).tag(config=True)
    ready_poll_interval = Float(
        0.05,
        help="""Seconds between checks that a starting instance's JupyterLab answers.
        Default 0.05: start() returns as soon as it answers, so the hub's own
        (exponentially backed-off) wait succeeds on its first try.""",
    ).tag(config=True)
    check_engine_capacity = Bool(
        True,
        help="""Refuse flavors with more vCPUs or memory than the engine's machine has.
        Default True.""",
    ).tag(config=True)

    isolate_instances = Bool(
        True,
        help="""Give each instance a network of its own, isolated from the others: no
        instance reaches another's ports (Jupyter, sshd, anything it listens on), while each
        still reaches the hub, the platform API and the outside (package mirrors). On Podman
        the networks are created with netavark's `isolate` option; Docker isolates its
        bridge networks from each other by default. Default True.

        c.WorkbenchDockerSpawner.isolate_instances = False  # one shared network
        """,
    ).tag(config=True)
    pids_limit = Integer(
        1024,
        help="""Most processes and threads one instance may run (its pids cgroup), so that a
        fork bomb in one instance leaves the others and the hub working. 0: the engine's
        default. Default 1024.""",
    ).tag(config=True)

    storage_files_dir = Unicode(
        "",
        help="""Folder of the files that hold new instances' storage, each a file system of
        exactly the instance's size that Podman mounts (spawner/storage_files.py). "": each
        volume is a folder of the engine and its size is only recorded. jupyterhub_config.py
        sets <data_dir>/storage where the engine is Podman on this machine.

        c.WorkbenchDockerSpawner.storage_files_dir = "/srv/workbench/storage"
        """,
    ).tag(config=True)

    engine_threads = Integer(
        8,
        help="""Threads the hub calls the container engine with, shared by all instances.
        DockerSpawner's one thread would queue every start, stop and poll of every user
        behind the slowest call (a stop waits up to stop_timeout). Default 8.""",
    ).tag(config=True)

    _engine_executor = None

    @property
    def executor(self):
        """The hub's pool of engine threads (one, bounded, for all instances)."""
        cls = WorkbenchDockerSpawner
        if cls._engine_executor is None:
            cls._engine_executor = ThreadPoolExecutor(
                self.engine_threads, thread_name_prefix="workbench-engine"
            )
        return cls._engine_executor

    @default("use_internal_ip")
    def _default_use_internal_ip(self):
        # the hub reaches each instance on a port published on the engine's loopback,
        # whatever network the instance is on
        return False

    @default("prefix")
    def _default_prefix(self):
        return "workbench"

    @default("remove")
    def _default_remove(self):
        # a fresh container on each start, so a new flavor or image takes effect;
        # the work volume keeps the user's files
        return True

    @default("pull_policy")
    def _default_pull_policy(self):
        return "never"

    @default("notebook_dir")
    def _default_notebook_dir(self):
        return self.work_dir

    @property
    def _engine_url(self) -> str:
        return self.client_kwargs.get("base_url") or "the default Docker socket"

    async def _engine(self, method, *args, **kwargs):
        """Call docker-py in the thread pool, turning connection failures into EngineError."""
        try:
            return await self.docker(method, *args, **kwargs)
        except (RequestsConnectionError, docker.errors.DockerException) as e:
            if isinstance(e, docker.errors.APIError):
                raise
            raise EngineError(
                f"The container engine at {self._engine_url} is not reachable ({e}). "
                "Start Podman's service or Docker (`make up` does) and try again."
            ) from e

    _machine = MachineCapacity()  # shared by all instances: one machine

    async def _capacity(self) -> tuple[float, int]:
        """vCPUs and memory bytes of the engine's machine."""
        return await WorkbenchDockerSpawner._machine.get(lambda: self._engine("info"))

    async def _apply_spec(self):
        resolved = await self.resolved_options()
        spec, image, flavor = resolved.spec, resolved.image, resolved.flavor
        self._progress(10, f"Checking image {image.name} ({image.ref})")
        try:
            image_info = await self._engine("inspect_image", image.ref)
        except docker.errors.NotFound:
            raise web.HTTPError(
                400,
                f"Image {image.name!r} ({image.ref}) is not built on this machine. "
                f"Build it with `workbench images build {image.name}`.",
            ) from None
        if self.check_engine_capacity:
            ncpu, mem = await self._capacity()
            if (ncpu and flavor.cpu > ncpu) or (mem and flavor.memory > mem):
                raise web.HTTPError(
                    400,
                    f"Flavor {flavor.name!r} needs {flavor.cpu:g} vCPUs and "
                    f"{format_bytes(flavor.memory)}; this machine has {ncpu:g} vCPUs and "
                    f"{format_bytes(mem)}. Pick a smaller flavor.",
                )
        cs = make_container_spec(
            owner=self.user.name,
            instance=self.name,
            object_name=self.object_name,
            spec=spec,
            image=image,
            flavor=flavor,
            work_dir=self.work_dir,
            run_as=self.run_as,
            pids_limit=self.pids_limit,
            network=make_network_name(self.object_name) if self.isolate_instances else "",
        )
        self._container_env = cs["environment"]
        self.image = cs["image"]
        # the image was just inspected: spare DockerSpawner inspecting it twice more
        # (pull_image and get_command), one engine round trip each
        self._image_cmd = image_info["Config"].get("Cmd") or []
        self.mem_limit = cs["mem_limit"]
        self.cpu_limit = cs["cpu_limit"]
        self.volumes = {
            cs["volume"]: cs["volumes"][cs["volume"]],
            # the network's files (CA bundle, apt sources): read-only, never in a save
            **{host: {"bind": path, "mode": "ro"} for host, path in self.instance_files.items()},
            **self._user_folder_binds(),
        }
        if not hasattr(self, "_configured_extras"):
            # what the admin configured, kept under what each start sets
            self._configured_extras = (dict(self.extra_host_config), dict(self.extra_create_kwargs))
        host_config, create_kwargs = self._configured_extras
        # no auto-remove: a container that exits while starting must stay for its
        # logs; start() removes it after reading them, stop() as usual
        self.extra_host_config = {**host_config, **cs["extra_host_config"], "auto_remove": False}
        self.extra_create_kwargs = {**create_kwargs, **cs["extra_create_kwargs"]}
        self._progress(
            20, f"Flavor {flavor.name}: {flavor.cpu:g} vCPU, {format_bytes(flavor.memory)}"
        )
        return cs

    def _user_folder_binds(self) -> dict:
        """The owner's folders (user_folders), made if missing, mounted read-only."""
        binds = {}
        for relative, template in self.user_folders.items():
            host = Path(template.replace("{user}", user_folder_name(self.user.name)))
            host.mkdir(parents=True, exist_ok=True)
            host.chmod(0o755)
            binds[str(host)] = {"bind": f"{self.work_dir}/{relative}", "mode": "ro"}
        return binds

    def get_env(self):
        env = super().get_env()
        env.update(self.instance_environment)
        env.update(getattr(self, "_container_env", None) or {})
        return env

    _engine_is_podman: bool | None = None

    async def _ensure_network(self, name: str, labels: dict):
        """Create the instance's own network (isolated from the other instances'), once:
        it stays with the instance across stops and goes with its deletion."""
        if not name:
            return
        self.network_name = name
        try:
            await self._engine("inspect_network", name)
            return
        except docker.errors.NotFound:
            pass
        podman = await self._is_podman()
        # Podman's bridges reach each other unless isolated; Docker's never do
        options = {"isolate": "true"} if podman else {}
        try:
            await self._engine(
                "create_network", name, driver="bridge", options=options, labels=labels
            )
        except docker.errors.APIError as e:
            if e.status_code != 409:  # created meanwhile by a concurrent start
                raise
        await self._keep_isolated()  # the new network's rules before anything runs on it
        self._progress(30, f"Created network {name}")

    async def _remove_network(self):
        """Remove the instance's network (when the instance is deleted)."""
        if not self.isolate_instances:
            return
        name = make_network_name(self.object_name)
        try:
            await self._engine("remove_network", name)
        except docker.errors.NotFound:
            pass
        except Exception as e:  # noqa: BLE001 - a leftover network is reused at the next start
            self.log.warning("%s: could not remove network %s: %s", self._log_name, name, e)

    async def available_images(self) -> set[str] | None:
        """The image references present on the engine (for the spawn form); None when the
        engine cannot list them (the form then offers every image, and a start still checks
        that its image is present)."""
        for attempt in range(1, LIST_IMAGES_ATTEMPTS + 1):
            try:
                images = await self._engine("images")
            except web.HTTPError:
                return None
            except docker.errors.APIError as e:
                # Podman fails a whole listing with "image not known" when an image is
                # removed while it lists: list again rather than fail the spawn page
                self.log.warning(
                    "%s: listing the engine's images failed (attempt %s): %s",
                    self._log_name,
                    attempt,
                    e,
                )
                await asyncio.sleep(0.2 * attempt)
                continue
            return {tag for image in images for tag in image.get("RepoTags") or []}
        return None

    async def pull_image(self, image):
        # images are built or pulled by `workbench images build`; _apply_spec checked
        # that this one is present, with a message saying how to build it
        return

    async def get_command(self):
        """The server's command (the image's, or `cmd`) under the out-of-memory wrapper, so
        a server the kernel kills for lack of memory says so where the engine does not."""
        if self.cmd:
            command = await super().get_command()
        else:
            command = list(getattr(self, "_image_cmd", None) or []) + self.get_args()
        return wrapped(command, "workbench-server")

    async def _said_oom(self, obj: dict) -> bool:
        """Whether the stopped container's last output has the wrapper's out-of-memory line."""
        try:
            tail = await self._engine("logs", obj["Id"], stdout=False, stderr=True, tail=20)
        except docker.errors.APIError as e:
            self.log.warning("%s: could not read the container's log: %s", self._log_name, e)
            return False
        return says_oom(tail)

    async def check_allowed(self, image):
        # DockerSpawner reads user_options["image"] as a raw reference; ours is a
        # catalog name, already resolved for this start (_apply_spec)
        return (await self.resolved_options()).image.ref

    async def _ensure_volume(self, name: str, labels: dict):
        try:
            await self._engine("inspect_volume", name)
            self._progress(30, f"Using storage volume {name}")
            return
        except docker.errors.NotFound:
            pass
        if not self.storage_files_dir:
            await self._engine("create_volume", name=name, labels=labels)
            self._progress(30, f"Created storage volume {name}")
            return
        size = int(labels.get(f"{LABEL_PREFIX}.storage-gib") or 1)
        path = storage_file(self.storage_files_dir, name)
        await asyncio.to_thread(path.unlink, missing_ok=True)  # left by an earlier failure
        await asyncio.to_thread(make_storage_file, path, size, self.run_as)
        try:
            await self._engine(
                "create_volume",
                name=name,
                driver="local",
                driver_opts={"type": "ext4", "device": str(path), "o": MOUNT_OPTIONS},
                labels={**labels, STORAGE_LABEL: str(path)},
            )
        except BaseException:
            await asyncio.to_thread(path.unlink, missing_ok=True)
            raise
        self._progress(30, f"Created storage volume {name} ({size} GiB)")

    async def _wait_ready(self, ip: str, port: int):
        """Return once JupyterLab answers; raise if the container exits first."""
        url = f"http://{ip}:{port}{self.server.base_url}api"
        client = AsyncHTTPClient()
        deadline = time.monotonic() + self.start_timeout
        # whether the container exited is asked of the engine less and less often (0.5 s,
        # then 1 s, then every 2 s): each inspect costs the engine CPU that starting
        # instances need, and a container that fails usually fails in its first seconds
        inspect_every = 0.5
        next_inspect = time.monotonic() + inspect_every
        while time.monotonic() < deadline:
            try:
                await client.fetch(url, request_timeout=2, follow_redirects=False)
                return
            except HTTPClientError as e:
                if e.code < 500:
                    return  # it answers; auth or redirects are the server's business
            except (TimeoutError, OSError):
                pass
            if time.monotonic() >= next_inspect:
                await self._raise_if_exited()
                inspect_every = min(inspect_every * 2, 2.0)
                next_inspect = time.monotonic() + inspect_every
            await asyncio.sleep(self.ready_poll_interval)
        raise web.HTTPError(
            504,
            f"JupyterLab did not answer within {self.start_timeout} s. "
            f"See the container's log: `podman logs {self.object_name}`.",
        )

    async def _raise_if_exited(self):
        obj = await self.get_object()
        if obj is None:
            raise web.HTTPError(500, "The instance's container disappeared while starting.")
        state = obj["State"]
        if state.get("Running"):
            return
        logs = await self._engine("logs", self.object_id, tail=20)
        tail = logs.decode(errors="replace").strip().splitlines()[-5:]
        reason = "out of memory" if state.get("OOMKilled") else f"exit code {state.get('ExitCode')}"
        # 400: the image or flavor the user picked cannot run
        raise web.HTTPError(
            400,
            f"The container stopped ({reason}). Last output: {' | '.join(tail) or '(none)'}. "
            "Pick another image or flavor.",
        )

    async def start(self):
        """Check the options, prepare the volume, start the container, wait for JupyterLab."""
        self._progress_reset()
        restarting = self.restart_pending
        self.record_start()
        try:
            cs = await self._apply_spec()
            labels = cs["extra_create_kwargs"]["labels"]
            # a first start makes both; neither needs the other
            await asyncio.gather(
                self._ensure_volume(cs["volume"], labels),
                self._ensure_network(cs["network"], labels),
            )
            self._progress(40, f"Starting container {self.object_name}")
            ip, port = await super().start()
            self._progress(70, "Container started; waiting for JupyterLab")
            # netavark's rules set up for the container come after ours: they are rebuilt
            # while JupyterLab starts, and the start ends once both are done
            await asyncio.gather(self._keep_isolated(), self._wait_ready(ip, port))
            self._progress(100, "JupyterLab is ready")
            return ip, port
        except BaseException as e:
            if not isinstance(e, asyncio.CancelledError):
                self._progress(100, f"Start failed: {getattr(e, 'log_message', None) or e}")
            await self._remove_failed_container()
            # a failed restart leaves the instance waiting for the next attempt
            self.restart_pending = restarting
            raise
        finally:
            self.forget_resolution()
            self._progress_done()

    async def _is_podman(self) -> bool:
        cls = WorkbenchDockerSpawner
        if cls._engine_is_podman is None:
            version = await self._engine("version")
            cls._engine_is_podman = any(
                "podman" in (c.get("Name") or "").lower() for c in version.get("Components") or []
            )
        return cls._engine_is_podman

    async def _keep_isolated(self):
        """On Podman with a network per instance, rebuild the platform's rules that keep
        isolated networks apart (spawner/isolation.py)."""
        if self.isolate_instances and await self._is_podman():
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self.executor, enforce, self.client)

    async def _remove_failed_container(self):
        """Remove what a failed start left; the volume stays with the instance."""
        if not self.object_id:
            return
        try:
            await self._engine("remove_container", self.object_id, force=True)
        except docker.errors.NotFound:
            pass
        except Exception as e:  # noqa: BLE001 - cleanup must not hide the start error
            self.log.warning("%s: could not remove failed container: %s", self._log_name, e)
        self.object_id = ""

    async def poll(self):
        """None while the container runs; else its exit status, recording why it stopped.

        The hub calls poll() before it stops (and removes) the container of a server that
        died, so the container's State (exit code, OOMKilled) is read here.
        """
        obj = await self.get_object()
        if obj is None:
            if self.object_name and not self.restart_pending:
                self.record_crash("the container disappeared")
            return 0
        state = obj["State"]
        if state.get("Running"):
            return None
        if obj.get("Id") != self._crash_recorded_for:
            self._crash_recorded_for = obj.get("Id")
            if state.get("ExitCode") == 137 and not state.get("OOMKilled"):
                state = {**state, "OOMKilled": await self._said_oom(obj)}
            self.record_crash(
                exit_reason(state, self.mem_limit),
                exit_code=state.get("ExitCode"),
                oom=bool(state.get("OOMKilled")),
            )
        return f"ExitCode={state.get('ExitCode')}, Error='{state.get('Error', '')}'"

    _crash_recorded_for = None

    async def stop(self, now=False):
        self.record_stop()
        await super().stop(now=now)

    async def delete_forever(self):
        """Remove the instance's container (if any) and its storage volume."""
        name = make_volume_name(self.object_name)
        try:
            await self._engine("remove_container", self.object_name, force=True)
        except docker.errors.NotFound:
            pass
        await self._remove_network()
        try:
            await self._engine("remove_volume", name, force=True)
            self.log.info("%s: removed storage volume %s", self._log_name, name)
        except docker.errors.NotFound:
            pass
        if self.storage_files_dir:
            await asyncio.to_thread(
                storage_file(self.storage_files_dir, name).unlink, missing_ok=True
            )
        await super().delete_forever()
