"""Attacks on the platform service's capacity: long image operations that would hold every
thread the service answers with."""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.platform import free_port, running_hub


class StallingRegistry:
    """A "registry" on loopback that accepts connections and never answers."""

    def __init__(self):
        self.port = free_port()
        self.sock = socket.create_server(("127.0.0.1", self.port))
        self.connections: list[socket.socket] = []
        self.closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections.append(conn)

    def close(self):
        """Cut every connection: the engine's pulls fail at once."""
        self.closed.set()
        self.sock.close()
        for conn in self.connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()


@pytest.fixture(scope="module")
def registry():
    r = StallingRegistry()
    yield r
    r.close()


@pytest.fixture(scope="module")
def load_hub(tmp_path_factory, engine, base_image, test_catalog, registry):
    settings = f'registry_url = "127.0.0.1:{registry.port}"\nregistry_insecure = true\n'
    root = tmp_path_factory.mktemp("load")
    with running_hub(root, engine.url, "load", settings, test_catalog) as h:
        yield h
        registry.close()


def pull(client, registry_port: int, prefix: str, user: str, n: int):
    ref = f"127.0.0.1:{registry_port}/{prefix}-saved/{user}/stall{n}:v1"
    try:
        return client.api("POST", f"users/{user}/images/pull", {"ref": ref, "base": "python"})
    except Exception as e:  # noqa: BLE001 - the pulls end when the registry is cut
        return e


def test_slow_pulls_do_not_stall_other_users(load_hub, registry):
    """Three attackers start two pulls each from a registry that never answers: six image
    transfers that would hold a thread each for as long as the engine waits. Meanwhile
    another user's API calls (instances, images, quotas: database and hub lookups) answer
    promptly, and a third pull by one attacker is refused with 429 instead of queueing."""
    attackers = {name: load_hub.add_user(name) for name in ("pull-a", "pull-b", "pull-c")}
    bystander = load_hub.add_user("bystander")
    bystander.instances()  # warm: the bystander's token is known to the service
    pool = ThreadPoolExecutor(8)
    futures = [
        pool.submit(pull, client, registry.port, load_hub.prefix, name, n)
        for name, client in attackers.items()
        for n in (1, 2)
    ]
    try:
        deadline = time.monotonic() + 60
        while len(registry.connections) < 4 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(registry.connections) >= 4, "the pulls never reached the registry"
        time.sleep(1)
        for path in ("users/bystander/instances", "images", "flavors", "quotas/users/bystander"):
            started = time.monotonic()
            r = requests.get(
                f"{bystander.api_url}/{path}",
                headers={"Authorization": f"token {bystander.token}"},
                timeout=120,
            )
            took = time.monotonic() - started
            assert r.status_code == 200, (path, r.status_code, r.text[:200])
            assert took < 20, f"{path} took {took:.1f} s while pulls were in flight"
        refused = pull(attackers["pull-a"], registry.port, load_hub.prefix, "pull-a", 3)
        assert getattr(refused, "status", None) == 429, refused
        assert "at once is 2" in refused.message
    finally:
        registry.close()
        for future in futures:
            future.result(timeout=180)
        pool.shutdown()
