"""SSH gateway benchmark: copy 256 MiB into an instance through the gateway and straight to
the instance's own sshd (container IP), each with OpenSSH's default cipher and with AES-GCM
(`-c aes128-gcm@openssh.com`), and the round trip of `ssh host true`; medians, and the
gateway's ratios against the direct path with the same cipher.

Run with `.venv/bin/python benchmarks/bench_ssh.py` (starts a hub on free ports and one
instance; removes them after). BENCH_SSH_MIB (default 256), BENCH_SSH_RUNS (copies per path,
default 3) and BENCH_SSH_PINGS (round trips per path, default 10) size it. Rounds are
interleaved: each round runs every path once, in an order that reverses from one round to
the next, so no path always runs first or right after another.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from hub.settings import load_settings  # noqa: E402
from spawner.instance_keys import SECRET_FILE, instance_private_pem  # noqa: E402
from tests.platform import Hub, remove_engine_objects  # noqa: E402

SIZE_MIB = int(os.environ.get("BENCH_SSH_MIB", "256"))
RUNS = int(os.environ.get("BENCH_SSH_RUNS", "3"))
PINGS = int(os.environ.get("BENCH_SSH_PINGS", "10"))
TARGET_THROUGHPUT = 0.8  # the gateway's throughput over the direct path's, same cipher
GCM = ["-c", "aes128-gcm@openssh.com"]


def timed(args: list[str]) -> float:
    start = time.perf_counter()
    r = subprocess.run(args, capture_output=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"{args[0]} failed: {r.stderr.decode()[-500:]}")
    return time.perf_counter() - start


def main():
    os.environ.setdefault("CONTAINERS_CONF", str(REPO / "spawner" / "containers.conf"))
    settings, _ = load_settings(None)
    engine = settings.engine()
    root = Path(tempfile.mkdtemp(prefix="bench-ssh-"))
    hub = Hub(root, engine_url=engine.url)
    hub.start()
    try:
        client = hub.add_user("bench")
        key = root / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        client.add_key("bench", (root / "id_ed25519.pub").read_text())
        client.api("POST", "users/bench/instances", {"name": "bench", "ssh": {"enabled": True}})
        # the instance's own sshd, signed in with the gateway's key for it
        inner_key = root / "inner_key"
        secret = (root / "data" / SECRET_FILE).read_text().strip().encode()
        inner_key.write_bytes(instance_private_pem(secret, "bench", "bench"))
        inner_key.chmod(0o600)
        api = docker.APIClient(base_url=engine.url)
        (container,) = api.containers(
            filters={"label": "ai-workbench.user=bench", "name": hub.prefix}
        )
        ip = next(iter(container["NetworkSettings"]["Networks"].values()))["IPAddress"]
        common = [
            "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
        ]  # fmt: skip
        gateway = dict(key=key, port=hub.ssh_port, target="bench.bench@127.0.0.1")
        direct = dict(key=inner_key, port=2222, target=f"jovyan@{ip}")
        # OpenSSH's default cipher (chacha20), and AES-GCM as the client's -c chooses it
        hops = {
            "direct": direct,
            "gateway": gateway,
            "direct-gcm": dict(direct, extra=GCM),
            "gw-gcm": dict(gateway, extra=GCM),
        }
        data = root / "data.bin"
        with open(data, "wb") as f:
            for _ in range(SIZE_MIB):
                f.write(os.urandom(1024 * 1024))

        def scp(hop):
            return timed(
                ["scp", "-i", str(hop["key"]), *common, *hop.get("extra", []),
                 "-P", str(hop["port"]), str(data),
                 f"{hop['target']}:bench.bin"]
            )  # fmt: skip

        def ping(hop):
            return timed(
                ["ssh", "-i", str(hop["key"]), *common, *hop.get("extra", []),
                 "-p", str(hop["port"]), hop["target"], "true"]
            )  # fmt: skip

        def interleaved(measure, rounds):
            """Each path's median; every round runs each path once, the order reversing from
            one round to the next."""
            samples = {name: [] for name in hops}
            order = list(hops)
            for i in range(rounds):
                for name in order if i % 2 == 0 else order[::-1]:
                    samples[name].append(measure(hops[name]))
            return {name: statistics.median(values) for name, values in samples.items()}

        interleaved(ping, 1)  # warm up
        copies, pings = interleaved(scp, RUNS), interleaved(ping, PINGS)
        print(
            f"scp of {SIZE_MIB} MiB, median of {RUNS}; `ssh host true`, median of {PINGS}; "
            "rounds interleaved, order reversing each round"
        )
        print("(times and rates: no target of their own; the targets are on the ratios below)")
        for name in hops:
            print(
                f"{name:10s} scp {copies[name]:6.2f} s ({SIZE_MIB / copies[name]:6.1f} MiB/s)   "
                f"ssh true {pings[name] * 1000:6.0f} ms"
            )
        for cipher, gw, dr in (
            ("OpenSSH's default cipher", "gateway", "direct"),
            ("aes128-gcm", "gw-gcm", "direct-gcm"),
        ):
            ratio = copies[dr] / copies[gw]
            verdict = "meets" if ratio >= TARGET_THROUGHPUT else "misses"
            print(
                f"throughput gateway/direct, {cipher}: {ratio:.2f} "
                f"({verdict} the target of >= {TARGET_THROUGHPUT})"
            )
            print(
                f"round trip gateway/direct, {cipher}: {pings[gw] / pings[dr]:.2f} (no target set)"
            )
        client.stop_instance("bench")
    finally:
        hub.stop()
        remove_engine_objects(engine.url, hub.prefix)


if __name__ == "__main__":
    main()
