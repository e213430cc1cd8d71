"""The platform's own firewall rules that keep Podman's isolated networks apart.

Instances, jobs and services each get a network made with netavark's `isolate` option, whose
firewall rules drop traffic between two such networks. Netavark 1.4 (Debian 12) removes the
FORWARD chain's jump to those rules when any isolated network is torn down (the last container
on it stops) and puts neither the jump nor the network's own rules back when it is set up
again, and Podman 4.3's service forgets the option itself for a network whose last container
stopped: after one instance stops and starts, every instance reaches every other. So the
platform keeps rules of its own, built from Podman's list of the platform's networks, in two chains
of its own (WORKBENCH-ISOLATION-1 and -2, netavark's shape), jumped to first from FORWARD.
They are rebuilt whenever the platform makes an isolated network or starts an instance; a
teardown by netavark never touches them. They need root (rootful Podman, as `make up` runs);
without it the platform logs that it cannot keep the networks apart.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading

import docker

log = logging.getLogger("workbench.isolation")

FIRST = "WORKBENCH-ISOLATION-1"
SECOND = "WORKBENCH-ISOLATION-2"
LIBPOD_NETWORKS = "/v4.0.0/libpod/networks/json"
LABEL = "ai-workbench."

_lock = threading.Lock()
_warned = False


def isolated_bridges(api: docker.APIClient) -> list[str]:
    """The bridge interfaces of the platform's networks (labelled ai-workbench.*) and of any
    other network made with `isolate`. The labels decide, not the option: Podman 4.3's
    service forgets a network's options after its last container stops and starts again
    (the file keeps them), and then sets the network up unisolated."""
    response = api._get(api.base_url + LIBPOD_NETWORKS)
    response.raise_for_status()
    bridges = set()
    for network in response.json():
        options = network.get("options") or {}
        ours = any(key.startswith(LABEL) for key in network.get("labels") or {})
        isolated = options.get("isolate") in ("true", "strict")
        if (ours or isolated) and network.get("network_interface"):
            bridges.add(network["network_interface"])
    return sorted(bridges)


def ruleset(bridges: list[str]) -> str:
    """iptables-restore input that refills both chains: traffic leaving one isolated bridge
    for another is dropped; traffic within a bridge, or out to the host's network, is not."""
    lines = ["*filter", f":{FIRST} - [0:0]", f":{SECOND} - [0:0]"]
    lines += [f"-A {FIRST} -i {b} ! -o {b} -j {SECOND}" for b in bridges]
    lines += [f"-A {SECOND} -o {b} -j DROP" for b in bridges]
    lines += ["COMMIT", ""]
    return "\n".join(lines)


def _iptables(*args: str, stdin: str | None = None) -> str:
    return subprocess.run(
        args, input=stdin, capture_output=True, text=True, check=True, timeout=30
    ).stdout


def _jump_first():
    """FORWARD's first rule jumps to the platform's chain (netavark's accept rules for its
    subnets come after it, so they cannot let isolated traffic through first)."""
    rules = [
        r for r in _iptables("iptables", "-w", "-S", "FORWARD").splitlines() if r.startswith("-A")
    ]
    jump = f"-A FORWARD -j {FIRST}"
    if rules and rules[0] == jump and rules.count(jump) == 1:
        return
    for _ in range(rules.count(jump)):
        _iptables("iptables", "-w", "-D", "FORWARD", "-j", FIRST)
    _iptables("iptables", "-w", "-I", "FORWARD", "1", "-j", FIRST)


def enforce(api: docker.APIClient) -> bool:
    """Rebuild the platform's isolation rules from the engine's isolated networks (blocking).
    False where they cannot be kept: without root or iptables (logged once), or when
    iptables refuses (logged each time)."""
    global _warned
    if os.geteuid() != 0 or not shutil.which("iptables-restore"):
        if not _warned:
            _warned = True
            log.warning(
                "Cannot keep Podman's isolated networks apart (needs root and iptables): "
                "netavark alone lets instances reach each other after any of them stops."
            )
        return False
    with _lock:
        bridges = isolated_bridges(api)
        try:
            _iptables("iptables-restore", "-w", "--noflush", stdin=ruleset(bridges))
            _jump_first()
        except (OSError, subprocess.SubprocessError) as e:
            # a root without the right to change the firewall (a container without
            # NET_ADMIN): said at every attempt, since it was expected to work
            detail = getattr(e, "stderr", "") or e
            log.error("Could not keep Podman's isolated networks apart: %s", detail)
            return False
    return True
