"""The sync client: the async one run on a private event loop in a background thread.

It works where asyncio.run() cannot, inside a running event loop (a Jupyter kernel's), and
keeps the method names scripts and tests have used (instances(), create_instance(...), ...).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

from .client import AsyncWorkbenchClient
from .errors import WorkbenchError
from .resources import Namespace

T = TypeVar("T")


class _LoopThread:
    """An event loop running forever in a daemon thread; one per process, for every client."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._main, name="workbench-client", daemon=True)
        self.thread.start()

    def _main(self):
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        if threading.current_thread() is self.thread:
            coro.close()
            raise RuntimeError(
                "The sync WorkbenchClient was called from its own event loop (in a callback "
                "it runs): use AsyncWorkbenchClient there."
            )
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # e.g. KeyboardInterrupt in a notebook: the call ends too
            raise


_loop_thread: _LoopThread | None = None
_loop_pid = 0
_loop_lock = threading.Lock()


def _runner() -> _LoopThread:
    global _loop_thread, _loop_pid
    with _loop_lock:
        if _loop_thread is None or _loop_pid != os.getpid():  # none yet, or forked
            _loop_thread, _loop_pid = _LoopThread(), os.getpid()
        return _loop_thread


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on the clients' private loop and wait for its result."""
    return _runner().run(coro)


async def _await(awaitable):
    return await awaitable


def iterate(agen) -> Iterator:
    """An async iterator as a plain one, each step run on the private loop."""
    try:
        while True:
            try:
                yield run(_await(anext(agen)))
            except StopAsyncIteration:
                return
    finally:
        run(agen.aclose())


def _synced(value):
    """A result for sync callers: an object with async calls of its own on the async client
    (a job, which holds the client as ._client; a service's .keys) comes wrapped as
    namespaces are."""
    if isinstance(getattr(value, "_client", None), AsyncWorkbenchClient):
        return SyncNamespace(value)
    return value


def _wrap(method: Callable) -> Callable:
    if inspect.isasyncgenfunction(method):

        @functools.wraps(method)
        def stream(*args, **kwargs):
            return iterate(method(*args, **kwargs))

        return stream
    if inspect.iscoroutinefunction(method):

        @functools.wraps(method)
        def call(*args, **kwargs):
            return _synced(run(method(*args, **kwargs)))

        return call
    return _synced(method)


class SyncNamespace:
    """A namespace of the async client with plain methods: client.instances.list() blocks
    and returns the list; calling the namespace lists (client.instances())."""

    def __init__(self, namespace: Namespace):
        object.__setattr__(self, "_namespace", namespace)

    def __getattr__(self, name: str):
        # private names stay private; a notebook's rich display (a comparison's table, a
        # TensorBoard's frame) comes through
        if name.startswith("_") and name != "_repr_html_":
            raise AttributeError(name)
        return _wrap(getattr(self._namespace, name))

    def __setattr__(self, name: str, value):
        setattr(self._namespace, name, value)

    def __dir__(self):
        return sorted(n for n in dir(self._namespace) if not n.startswith("_"))

    def __repr__(self) -> str:
        return f"<sync {self._namespace!r}>"

    def __call__(self, *args, **kwargs):
        return run(self._namespace(*args, **kwargs))


class SyncImages(SyncNamespace):
    def wait_saved(
        self,
        instance: str,
        user: str | None = None,
        poll: float = 0.5,
        on_status: Callable[[dict], object] | None = None,
    ) -> dict:
        """Poll a save until it is done (its status) or failed (WorkbenchError); on_status
        sees every status, called in this thread."""
        while True:
            status = self.save_status(instance, user)
            if on_status is not None:
                on_status(status)
            if status["state"] == "done":
                return status
            if status["state"] == "failed":
                raise WorkbenchError(500, status["message"])
            time.sleep(poll)


# namespaces whose sync form differs from the plain wrapping
SYNC_NAMESPACES: dict[str, type[SyncNamespace]] = {"images": SyncImages}


class WorkbenchClient:
    """The platform's client for scripts, the CLI and notebook cells: every call blocks.

    Arguments and configuration as AsyncWorkbenchClient (by default from the environment:
    $WORKBENCH_URL and $WORKBENCH_TOKEN, or inside an instance its own variables).
    Namespaces: client.instances.list(), client.images.save(...), client.keys.add(...), ...;
    the older flat names (client.instances(), client.create_instance(...)) stay as aliases.
    """

    def __init__(self, url: str | None = None, token: str | None = None, **kwargs):
        aio = AsyncWorkbenchClient(url, token, **kwargs)
        object.__setattr__(self, "aio", aio)
        for name, value in vars(aio).items():
            if isinstance(value, Namespace):
                wrapper = SYNC_NAMESPACES.get(name, SyncNamespace)
                object.__setattr__(self, name, wrapper(value))

    # what the async client holds, read and set through
    _SHARED = ("url", "api_url", "hub_api_url", "token", "user", "timeout", "headers", "verify")

    def __getattr__(self, name: str):
        if name in self._SHARED:
            return getattr(self.aio, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name: str, value):
        if name in self._SHARED:
            setattr(self.aio, name, value)
        else:
            object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.aio.api_url}>"

    def close(self):
        run(self.aio.aclose())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- calls ----------------------------------------------------------------------------

    def api(self, method: str, path: str, body=None, **kwargs):
        """Call the platform API at path (relative to /services/workbench/api/)."""
        return run(self.aio.api(method, path, body, **kwargs))

    def hub(self, method: str, path: str, body=None, **kwargs):
        """Call JupyterHub's own API at path (relative to /hub/api/)."""
        return run(self.aio.hub(method, path, body, **kwargs))

    def request(self, method: str, url: str, body=None, **kwargs) -> tuple[int, Any]:
        """(status, data) of a call to an absolute URL (see AsyncWorkbenchClient.request)."""
        return run(self.aio.request(method, url, body, **kwargs))

    def whoami(self) -> dict:
        return run(self.aio.whoami())

    def login(self, username: str, password: str, **kwargs) -> str:
        """Sign in with a password; sets and returns a new API token for this client."""
        return run(self.aio.login(username, password, **kwargs))

    def search(self, source=None, **settings):
        """Start a hyperparameter search: client.experiments.search(); the Search."""
        return self.experiments.search(source, **settings)

    def compare(self, runs=None, **kwargs):
        """Runs side by side: client.experiments.compare(); the Comparison."""
        return self.experiments.compare(runs, **kwargs)

    def tensorboard(self, runs=None, **kwargs):
        """Open TensorBoard over runs or a search: client.tensorboards.open()."""
        return self.tensorboards.open(runs, **kwargs)

    # --- the flat names (aliases of the namespaces' methods) ------------------------------

    def instance(self, name: str, user: str | None = None) -> dict:
        return self.instances.get(name, user)

    def create_instance(self, name: str, **kwargs) -> dict:
        return self.instances.create(name, **kwargs)

    def start_instance(self, name: str, user: str | None = None) -> dict:
        return self.instances.start(name, user)

    def stop_instance(self, name: str, user: str | None = None) -> dict:
        return self.instances.stop(name, user)

    def update_instance(self, name: str, user: str | None = None, **changes) -> dict:
        return self.instances.update(name, user, **changes)

    def set_auto_stop(
        self,
        name: str,
        idle_minutes: float | None = None,
        max_hours: float | None = None,
        user: str | None = None,
    ) -> dict:
        return self.instances.set_auto_stop(name, idle_minutes, max_hours, user)

    def extend_instance(self, name: str, minutes: float, user: str | None = None) -> dict:
        return self.instances.extend(name, minutes, user)

    def delete_instance(self, name: str, user: str | None = None) -> None:
        self.instances.delete(name, user)

    def instance_ssh(self, name: str, user: str | None = None) -> dict:
        return self.instances.ssh(name, user)

    def set_ssh(
        self, name: str, enabled: bool, allowlist: list[str] | None = None, user: str | None = None
    ) -> dict:
        return self.instances.set_ssh(name, enabled, allowlist, user)

    def progress(self, name: str, user: str | None = None, **kwargs) -> Iterator[dict]:
        return self.instances.progress(name, user, **kwargs)

    def add_key(self, name: str, public_key: str, user: str | None = None) -> dict:
        return self.keys.add(name, public_key, user)

    def generate_key(self, name: str, user: str | None = None) -> dict:
        return self.keys.generate(name, user)

    def rename_key(self, key_id: int, name: str, user: str | None = None) -> dict:
        return self.keys.rename(key_id, name, user)

    def delete_key(self, key_id: int, user: str | None = None) -> None:
        self.keys.delete(key_id, user)

    def audit_events(self, **filters) -> list[dict]:
        return self.audit.events(**filters)

    def audit_export(self, **filters) -> str:
        return self.audit.export(**filters)

    def audit_verify(self) -> dict:
        return self.audit.verify()

    def save_instance(
        self,
        name: str,
        image: str,
        tag: str = "latest",
        description: str = "",
        user: str | None = None,
        wait: bool = False,
    ) -> dict:
        return self.images.save(name, image, tag, description, user, wait)

    def save_status(self, name: str, user: str | None = None) -> dict:
        return self.images.save_status(name, user)

    def wait_saved(self, name: str, user: str | None = None, poll: float = 0.5, on_status=None):
        return self.images.wait_saved(name, user, poll, on_status)

    def delete_image(self, image: str, tag: str, user: str | None = None) -> None:
        self.images.delete(image, tag, user)

    def share_image(self, image: str, tag: str, *args, **kwargs) -> dict:
        return self.images.share(image, tag, *args, **kwargs)

    def push_image(self, image: str, tag: str, user: str | None = None) -> dict:
        return self.images.push(image, tag, user)

    def pull_image(self, ref: str, *args, **kwargs) -> dict:
        return self.images.pull(ref, *args, **kwargs)
