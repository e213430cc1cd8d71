"""SSH gateway benchmark: the gateway against OpenSSH used as a jump host and against the
instance's own sshd straight, with the same cipher on every path.

Three paths into one instance: `direct` (the instance's sshd at the container's IP, signed in
with the gateway's key for it), `jump` (the same, through an OpenSSH sshd that this script
starts on loopback, as `ssh -o ProxyCommand="ssh -W %h:%p jump"`: the fair anchor for any
relay, which pays a second decryption and encryption on the same cores) and `gateway` (the
platform's SSH gateway). Each path runs with AES-GCM (`-c aes128-gcm@openssh.com`, on the
jump's hop too) and with OpenSSH's default cipher (chacha20-poly1305): the user's side of
each path uses the same cipher (the gateway's hop to the instance is AES-GCM, its choice).

Measured: scp of BENCH_SSH_MIB MiB (default 256) into the instance, BENCH_SSH_RUNS rounds
(default 3); `ssh host true`, BENCH_SSH_PINGS rounds (default 10); BENCH_SSH_BURST small
`ssh host cmd` calls in a row (default 100, in bursts of 10 per path and round); CPU seconds
per GiB copied of the gateway's process and of the jump host's sshd. Every round runs every
path once, the order reversing from one round to the next, so no path always runs first or
right after another. Figures are medians (the burst: the sum); the ratios printed are the
targets: throughput gateway/jump >= 1.0, set-up time added by the gateway over the set-up time
added by the jump host <= 1.0, and `ssh host true` through the gateway within 1.3 times the
direct time (an aim).

Run with `.venv/bin/python benchmarks/bench_ssh.py` (starts a hub on free ports, one
instance and the jump host's sshd, which needs OpenSSH's server: `apt-get install
openssh-server`; removes them after).
"""

from __future__ import annotations

import getpass
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker
import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from hub.settings import load_settings  # noqa: E402
from spawner.instance_keys import SECRET_FILE, instance_private_pem  # noqa: E402
from tests.platform import Hub, free_port, remove_engine_objects  # noqa: E402

SIZE_MIB = int(os.environ.get("BENCH_SSH_MIB", "256"))
RUNS = int(os.environ.get("BENCH_SSH_RUNS", "3"))
PINGS = int(os.environ.get("BENCH_SSH_PINGS", "10"))
BURST = int(os.environ.get("BENCH_SSH_BURST", "100"))
BURST_ROUND = 10  # calls in a row per path and round
SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
TARGET_THROUGHPUT = 1.0  # the gateway's throughput over the jump host's, at least
TARGET_SETUP = 1.0  # set-up time the gateway adds over what the jump host adds, at most
AIM_TRUE = 1.3  # `ssh host true` through the gateway over direct, at most (an aim)
CIPHERS = {"aes128-gcm": ["-c", "aes128-gcm@openssh.com"], "default": []}
COMMON = [
    "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "IdentitiesOnly=yes",
    "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
]  # fmt: skip


def run(args: list[str]) -> float:
    start = time.perf_counter()
    r = subprocess.run(args, capture_output=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"{shlex.join(args)} failed: {r.stderr.decode()[-500:]}")
    return time.perf_counter() - start


def cpu_seconds(proc: psutil.Process, children: bool = False) -> float:
    """CPU seconds of a process (with children: of its children it has reaped, too)."""
    t = proc.cpu_times()
    total = t.user + t.system
    if children:
        total += t.children_user + t.children_system
    return total


class JumpHost:
    """OpenSSH's sshd on loopback, a jump host for the direct path (`ssh -W`)."""

    def __init__(self, root: Path, authorized_key: str):
        if not Path(SSHD).exists():
            sys.exit(
                "bench_ssh: OpenSSH's server (sshd) is needed for the jump host anchor: "
                "apt-get install openssh-server"
            )
        self.dir = root / "jump"
        self.dir.mkdir()
        self.port = free_port()
        self.user = getpass.getuser()
        host_key = self.dir / "host_ed25519_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)])
        (self.dir / "authorized_keys").write_text(authorized_key)
        config = self.dir / "sshd_config"
        config.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {host_key}\n"
            f"PidFile {self.dir / 'sshd.pid'}\nAuthorizedKeysFile {self.dir / 'authorized_keys'}\n"
            "AuthenticationMethods publickey\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
            "PermitRootLogin prohibit-password\nAllowTcpForwarding yes\nMaxStartups 100\n"
            "LogLevel ERROR\n"
        )
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # its privilege separation
        self.proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=open(self.dir / "sshd.log", "wb"),  # noqa: SIM115 - lives as long as sshd
        )
        self.ps = psutil.Process(self.proc.pid)
        deadline = time.monotonic() + 10
        connections = getattr(self.ps, "net_connections", None) or self.ps.connections
        while not any(c.laddr.port == self.port for c in connections("tcp")):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"bench_ssh: the jump host's sshd did not start: {self.log()}")
            time.sleep(0.1)

    def log(self) -> str:
        return (self.dir / "sshd.log").read_text(errors="replace")[-2000:]

    def cpu(self) -> float:
        """CPU seconds of the sshd and its ended connections (wait for them to end)."""
        deadline = time.monotonic() + 5
        while self.ps.children() and time.monotonic() < deadline:
            time.sleep(0.05)
        return cpu_seconds(self.ps, children=True)

    def proxy(self, key: Path, cipher: list[str]) -> list[str]:
        hop = ["ssh", "-i", str(key), *COMMON, *cipher, "-p", str(self.port), "-W", "%h:%p"]
        return ["-o", "ProxyCommand=" + shlex.join([*hop, f"{self.user}@127.0.0.1"])]

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


def main():
    os.environ.setdefault("CONTAINERS_CONF", str(REPO / "spawner" / "containers.conf"))
    settings, _ = load_settings(None)
    engine = settings.engine()
    root = Path(tempfile.mkdtemp(prefix="bench-ssh-"))
    hub = Hub(root, engine_url=engine.url)
    hub.start()
    jump = None
    try:
        client = hub.add_user("bench")
        key = root / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        public_key = (root / "id_ed25519.pub").read_text()
        client.add_key("bench", public_key)
        client.api("POST", "users/bench/instances", {"name": "bench", "ssh": {"enabled": True}})
        jump = JumpHost(root, public_key)
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
        (gateway_ps,) = [
            p
            for p in psutil.Process(hub.proc.pid).children(recursive=True)
            if "ssh_gateway" in " ".join(p.cmdline())
        ]

        # path name: (ssh options but the port, port, login@host, what its CPU is read from)
        paths = {}
        for cipher, c in CIPHERS.items():
            paths[f"direct {cipher}"] = (["-i", str(inner_key), *c], 2222, f"jovyan@{ip}", None)
            paths[f"jump {cipher}"] = (
                ["-i", str(inner_key), *c, *jump.proxy(key, c)], 2222, f"jovyan@{ip}", "jump"
            )  # fmt: skip
            paths[f"gateway {cipher}"] = (
                ["-i", str(key), *c], hub.ssh_port, "bench.bench@127.0.0.1", "gateway"
            )  # fmt: skip
        data = root / "data.bin"
        with open(data, "wb") as f:
            for _ in range(SIZE_MIB):
                f.write(os.urandom(1024 * 1024))
        cpu = {name: 0.0 for name in paths}

        def cpu_of(path) -> float:
            if path[3] == "gateway":
                return cpu_seconds(gateway_ps)
            if path[3] == "jump":
                return jump.cpu()
            return 0.0

        def scp(name):
            opts, port, login, _ = path = paths[name]
            before = cpu_of(path)
            took = run(["scp", *COMMON, *opts, "-P", str(port), str(data), f"{login}:bench.bin"])
            cpu[name] += cpu_of(path) - before
            return took

        def ssh(name, command="true"):
            opts, port, login, _ = paths[name]
            return run(["ssh", *COMMON, *opts, "-p", str(port), login, command])

        def burst(name):
            return sum(ssh(name, "echo $((6*7)) > /dev/null") for _ in range(BURST_ROUND))

        def interleaved(measure, rounds, combine=statistics.median):
            """Each path's figure; every round runs each path once, the order reversing
            from one round to the next."""
            samples = {name: [] for name in paths}
            order = list(paths)
            for i in range(rounds):
                for name in order if i % 2 == 0 else order[::-1]:
                    samples[name].append(measure(name))
            return {name: combine(values) for name, values in samples.items()}

        interleaved(ssh, 2)  # warm up: caches, the gateway's connection to the instance
        copies = interleaved(scp, RUNS)
        trues = interleaved(ssh, PINGS)
        bursts = interleaved(burst, max(1, BURST // BURST_ROUND), combine=sum)
        calls = max(1, BURST // BURST_ROUND) * BURST_ROUND
        gib = SIZE_MIB * RUNS / 1024

        print(
            f"SSH: direct, OpenSSH jump host (ProxyCommand ssh -W) and the gateway; scp of "
            f"{SIZE_MIB} MiB (median of {RUNS}), `ssh host true` (median of {PINGS}), {calls} "
            "`ssh host cmd` in a row; rounds interleaved, order reversing each round"
        )
        print("(times, rates and CPU: no target of their own; the targets are on the ratios)")
        for name in paths:
            line = (
                f"{name:20s} scp {copies[name]:6.2f} s ({SIZE_MIB / copies[name]:6.1f} MiB/s)  "
                f"ssh true {trues[name] * 1000:5.0f} ms  {calls} cmds {bursts[name]:6.2f} s"
            )
            if paths[name][3]:
                line += f"  CPU {cpu[name] / gib:5.2f} s/GiB ({paths[name][3]})"
            print(line)
        for cipher in CIPHERS:
            d, j, g = (f"{side} {cipher}" for side in ("direct", "jump", "gateway"))
            throughput = copies[j] / copies[g]
            added_jump = trues[j] - trues[d]
            added_gw = trues[g] - trues[d]
            setup = added_gw / added_jump if added_jump > 0 else float("inf")
            verdict = {True: "meets", False: "misses"}
            print(f"-- {cipher}:")
            print(
                f"throughput gateway/jump {throughput:.2f} "
                f"({verdict[throughput >= TARGET_THROUGHPUT]} the target of >= "
                f"{TARGET_THROUGHPUT}); gateway/direct {copies[d] / copies[g]:.2f}, "
                f"jump/direct {copies[d] / copies[j]:.2f} (no target)"
            )
            print(
                f"set-up added, gateway/jump {setup:.2f}: {added_gw * 1000:+.0f} ms against "
                f"{added_jump * 1000:+.0f} ms ({verdict[setup <= TARGET_SETUP]} the target of "
                f"<= {TARGET_SETUP})"
            )
            ratio = trues[g] / trues[d]
            print(
                f"ssh true gateway/direct {ratio:.2f} ({verdict[ratio <= AIM_TRUE]} the aim of "
                f"<= {AIM_TRUE}); jump/direct {trues[j] / trues[d]:.2f} (no target)"
            )
            print(
                f"{calls} cmds gateway/jump {bursts[g] / bursts[j]:.2f}, gateway/direct "
                f"{bursts[g] / bursts[d]:.2f} (no target)"
            )
            print(
                f"CPU per GiB copied, gateway/jump sshd {cpu[g] / max(cpu[j], 1e-9):.2f} "
                f"({cpu[g] / gib:.2f} against {cpu[j] / gib:.2f} s/GiB; no target)"
            )
        client.stop_instance("bench")
    finally:
        if jump is not None:
            jump.stop()
        hub.stop()
        remove_engine_objects(engine.url, hub.prefix)


if __name__ == "__main__":
    main()
