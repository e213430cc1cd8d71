"""SSH gateway benchmark: copy 256 MiB into an instance through the gateway (with OpenSSH's
default cipher, and with AES-GCM) and straight to the instance's own sshd (container IP), and
the round trip of `ssh host true`; medians, ratios.

Run with `.venv/bin/python benchmarks/bench_ssh.py` (starts a hub on free ports and one
instance; removes them after).
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
from ssh_gateway.instance_keys import SECRET_FILE, instance_private_pem  # noqa: E402
from tests.platform import Hub, remove_engine_objects  # noqa: E402

SIZE_MIB = int(os.environ.get("BENCH_SSH_MIB", "256"))
RUNS = int(os.environ.get("BENCH_SSH_RUNS", "3"))
PINGS = int(os.environ.get("BENCH_SSH_PINGS", "10"))


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
        # OpenSSH's default cipher (chacha20) on the user's side, and AES-GCM as chosen by -c
        gcm = dict(gateway, extra=["-c", "aes128-gcm@openssh.com"])
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
                ["ssh", "-i", str(hop["key"]), *common, "-p", str(hop["port"]), hop["target"],
                 "true"]
            )  # fmt: skip

        results = {}
        for name, hop in (("direct", direct), ("gateway", gateway), ("gw-gcm", gcm)):
            ping(hop)  # warm up
            results[name] = {
                "scp": statistics.median(scp(hop) for _ in range(RUNS)),
                "ping": statistics.median(ping(hop) for _ in range(PINGS)),
            }
        print(f"scp of {SIZE_MIB} MiB, median of {RUNS}; `ssh host true`, median of {PINGS}")
        for name, r in results.items():
            print(
                f"{name:8s} scp {r['scp']:6.2f} s ({SIZE_MIB / r['scp']:6.1f} MiB/s)   "
                f"ssh true {r['ping'] * 1000:6.0f} ms"
            )
        ratio = results["direct"]["scp"] / results["gateway"]["scp"]
        print(f"throughput ratio gateway/direct: {ratio:.2f} (target >= 0.8)")
        ratio = results["direct"]["scp"] / results["gw-gcm"]["scp"]
        print(f"throughput ratio gateway (client -c aes128-gcm)/direct: {ratio:.2f}")
        print(
            "round trip ratio gateway/direct: "
            f"{results['gateway']['ping'] / results['direct']['ping']:.2f}"
        )
        client.stop_instance("bench")
    finally:
        hub.stop()
        remove_engine_objects(engine.url, hub.prefix)


if __name__ == "__main__":
    main()
