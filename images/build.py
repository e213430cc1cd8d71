"""Building the catalog's images: wheelhouse, base OS bootstrap, engine build with progress."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .catalog import Catalog, ImageEntry

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
KERNEL_INSTALLER = HERE.parent / "kernels" / "install_kernel.py"
# this repository's own packages for the base image's server environment (/opt/jupyter):
# the JupyterLab extensions, built into wheels on the host (they need Node.js to build)
SERVER_PACKAGES = [HERE.parent / "labextensions" / "workbench"]
BUILD_OUTPUTS = {"node_modules", "lib", "dist", "labextension", "__pycache__", ".ipynb_checkpoints"}
BASE_OS_IMAGE = "docker.io/library/debian:bookworm-slim"
BUILD_HASH_LABEL = "ai-workbench.build-hash"
IMAGE_PYTHON = "3.11.2"  # Debian 12's python3, which every image's environments use
# Debian 12's glibc is 2.36: every manylinux tag up to it fits
IMAGE_PLATFORMS = [f"manylinux_2_{minor}_x86_64" for minor in range(36, 4, -1)] + [
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
]
BOOTSTRAP_PACKAGES = (
    "python3,python3-venv,python3-pip,ca-certificates,git,tini,curl,procps,less,openssh-client,"
    "libgomp1,openssh-server,rsync"
)

Progress = Callable[[str], None]


def source_hash(package: Path) -> str:
    """Hash of a package's sources, without its build outputs and installed node modules."""
    h = hashlib.sha256()
    for f in sorted(package.rglob("*")):
        rel = f.relative_to(package)
        if not f.is_file() or BUILD_OUTPUTS & set(rel.parts) or f.suffix == ".tsbuildinfo":
            continue
        h.update(str(rel).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


class BuildError(RuntimeError):
    """An image build step failed; the message names the image and the step."""


@dataclass
class BuildResult:
    """What happened to one image: built, up to date, and how long it took."""

    name: str
    ref: str
    status: str  # "built" or "up to date"
    seconds: float
    size: int = 0


def _run(cmd: list[str], *, env=None, step: str, on_line: Progress | None = None) -> list[str]:
    """Run cmd, streaming its output lines to on_line; BuildError naming step on failure."""
    lines: list[str] = []
    try:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, bufsize=1
        )
    except FileNotFoundError as e:
        raise BuildError(f"{step}: {cmd[0]} is not installed ({e})") from e
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip()
        lines.append(line)
        if on_line:
            on_line(line)
    if proc.wait() != 0:
        tail = "\n    ".join(lines[-15:])
        raise BuildError(f"{step} failed (exit {proc.returncode}). Last output:\n    {tail}")
    return lines


def _sha(*paths: Path, extra: str = "") -> str:
    h = hashlib.sha256(extra.encode())
    for path in paths:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


class ImageBuilder:
    """Builds catalog images with the engine's CLI (podman or docker)."""

    def __init__(
        self,
        catalog: Catalog,
        *,
        cli: str,
        cache_dir: str | Path,
        engine_url: str = "",
        env: dict | None = None,
        progress: Progress = print,
        pip: list[str] | None = None,
    ):
        self.catalog = catalog
        self.cli = cli
        self.cache_dir = Path(cache_dir)
        self.env = dict(env or os.environ)
        if engine_url and Path(cli).name == "docker":
            # the docker CLI talks to the engine through its API; podman uses its storage
            self.env["DOCKER_HOST"] = engine_url
        self.progress = progress
        self.pip = pip or [sys.executable, "-m", "pip"]

    # engine queries

    def _inspect(self, ref: str, fmt: str) -> str | None:
        out = subprocess.run(
            [self.cli, "image", "inspect", "--format", fmt, ref],
            capture_output=True,
            text=True,
            env=self.env,
        )
        return out.stdout.strip() if out.returncode == 0 else None

    def exists(self, ref: str) -> bool:
        return self._inspect(ref, "{{.Id}}") is not None

    def size(self, ref: str) -> int:
        return int(self._inspect(ref, "{{.Size}}") or 0)

    def built_hash(self, ref: str) -> str:
        fmt = '{{index .Config.Labels "' + BUILD_HASH_LABEL + '"}}'
        return self._inspect(ref, fmt) or ""

    # inputs

    def image_dir(self, entry: ImageEntry) -> Path:
        return HERE / entry.dockerfile

    def wheelhouse(self, entry: ImageEntry) -> Path:
        """Fetch (once) the wheels of the image's requirements files; works offline after."""
        reqs = sorted(self.image_dir(entry).glob("requirements*.txt"))
        house = self.cache_dir / "wheels" / entry.dockerfile
        stamp = house / ".complete"
        digest = _sha(*reqs, extra=IMAGE_PYTHON + ",".join(IMAGE_PLATFORMS))
        if stamp.exists() and stamp.read_text() == digest:
            self.progress(f"[{entry.name}] wheelhouse up to date ({house})")
            return house
        if not reqs:
            house.mkdir(parents=True, exist_ok=True)
            stamp.write_text(digest)
            return house
        house.mkdir(parents=True, exist_ok=True)
        self.progress(f"[{entry.name}] fetching wheels into {house}")
        # wheels for the image's interpreter (Debian 12's), not the build host's
        cmd = [
            *self.pip,
            "download",
            "--quiet",
            "--only-binary=:all:",
            f"--python-version={IMAGE_PYTHON}",
            "--implementation=cp",
            *(f"--platform={p}" for p in IMAGE_PLATFORMS),
            "--dest",
            str(house),
        ]
        for req in reqs:
            cmd += ["-r", str(req)]
        _run(cmd, step=f"[{entry.name}] fetching wheels")
        stamp.write_text(digest)
        return house

    def server_wheels(self) -> list[Path]:
        """Wheels of SERVER_PACKAGES, built (once per source version) with pip and npm."""
        wheels = []
        for package in SERVER_PACKAGES:
            out = self.cache_dir / "wheels" / "local" / f"{package.name}-{source_hash(package)}"
            built = sorted(out.glob("*.whl"))
            if not built:
                self.progress(f"building the {package.name} wheel (npm, JupyterLab builder)")
                _run(
                    [*self.pip, "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out)]
                    + [str(package)],
                    step=f"building the {package.name} wheel from {package}",
                )
                built = sorted(out.glob("*.whl"))
            wheels += built
        return wheels

    def ensure_base_os(self) -> None:
        """Make debian:bookworm-slim available: pull it, or bootstrap it with debootstrap."""
        if self.exists(BASE_OS_IMAGE):
            return
        self.progress(f"pulling {BASE_OS_IMAGE}")
        pulled = subprocess.run(
            [self.cli, "pull", BASE_OS_IMAGE], capture_output=True, text=True, env=self.env
        )
        if pulled.returncode == 0:
            return
        self.progress(
            "Docker Hub is unreachable; bootstrapping Debian 12 with debootstrap (~1 min)"
        )
        if not shutil.which("debootstrap"):
            raise BuildError(
                "bootstrapping the base OS: debootstrap is not installed "
                "(`apt-get install -y debootstrap`, which `make up` does)"
            )
        with tempfile.TemporaryDirectory(prefix="workbench-rootfs-") as root:
            _run(
                [
                    "debootstrap",
                    "--variant=minbase",
                    f"--include={BOOTSTRAP_PACKAGES}",
                    "bookworm",
                    root,
                    "http://deb.debian.org/debian",
                ],
                step="bootstrapping the base OS (debootstrap)",
                on_line=lambda line: None,
            )
            tar = subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE)
            imp = subprocess.run(
                [self.cli, "import", "-", BASE_OS_IMAGE],
                stdin=tar.stdout,
                capture_output=True,
                text=True,
                env=self.env,
            )
            tar.wait()
            if imp.returncode != 0:
                raise BuildError(f"importing the bootstrapped base OS failed: {imp.stderr.strip()}")
        self.progress(f"bootstrapped {BASE_OS_IMAGE}")

    def build_hash(self, entry: ImageEntry) -> str:
        base = self.catalog.get(entry.base).ref if entry.base else BASE_OS_IMAGE
        base_id = self._inspect(base, "{{.Id}}") or ""
        args = " ".join(self.environment_args(entry))
        if not entry.base:  # the base image carries the server packages
            args += "|" + ",".join(source_hash(p) for p in SERVER_PACKAGES)
        return _sha(self.image_dir(entry), KERNEL_INSTALLER, extra=f"{entry.ref}|{base_id}|{args}")

    @staticmethod
    def environment_args(entry: ImageEntry) -> list[str]:
        """Build arguments: the catalog's build_args, and the engine environment's name,
        display name and engine for the shared engine Dockerfiles (images/engine*/)."""
        args = list(entry.build_args)
        env = next((e for e in entry.environments if e.engine), None)
        if env is not None:
            args += [
                ("ENV_NAME", env.name),
                ("ENV_DISPLAY_NAME", env.display_name),
                ("ENV_ENGINE", env.engine),
            ]
        return [part for key, value in args for part in ("--build-arg", f"{key}={value}")]

    def _remove_replaced(self, previous: str | None, ref: str):
        """Remove the image a rebuild replaced, unless something still uses it."""
        if previous and previous != self._inspect(ref, "{{.Id}}"):
            subprocess.run([self.cli, "rmi", previous], capture_output=True, env=self.env)

    # build

    def build(self, names: list[str] | None = None, *, force: bool = False) -> list[BuildResult]:
        """Build `names` (all if empty) and what they build on; skip those up to date."""
        order = self.catalog.build_order(names)
        results = []
        for i, entry in enumerate(order, 1):
            self.progress(f"[{i}/{len(order)}] {entry.name} ({entry.ref})")
            results.append(self._build_one(entry, force=force))
        return results

    def _build_one(self, entry: ImageEntry, *, force: bool) -> BuildResult:
        t0 = time.monotonic()
        if not entry.base:
            self.ensure_base_os()
        digest = self.build_hash(entry)
        if not force and self.built_hash(entry.ref) == digest:
            self.progress(f"[{entry.name}] up to date")
            return BuildResult(entry.name, entry.ref, "up to date", 0.0, self.size(entry.ref))
        house = self.wheelhouse(entry)
        previous = self._inspect(entry.ref, "{{.Id}}")
        with tempfile.TemporaryDirectory(prefix=f"workbench-build-{entry.name}-") as ctx:
            ctx_path = Path(ctx)
            for item in self.image_dir(entry).iterdir():
                if item.is_file():
                    shutil.copy2(item, ctx_path / item.name)
            shutil.copy2(KERNEL_INSTALLER, ctx_path / "install_kernel.py")
            wheels = ctx_path / "wheels"
            wheels.mkdir()
            local = self.server_wheels() if not entry.base else []
            for whl in [*house.glob("*.whl"), *local]:
                try:
                    os.link(whl, wheels / whl.name)
                except OSError:  # another filesystem
                    shutil.copy2(whl, wheels / whl.name)
            cmd = [self.cli, "build", "--tag", entry.ref, "--label", f"{BUILD_HASH_LABEL}={digest}"]
            if entry.base:
                cmd += ["--build-arg", f"BASE_IMAGE={self.catalog.get(entry.base).ref}"]
            else:
                cmd += ["--build-arg", f"BASE_IMAGE={BASE_OS_IMAGE}"]
            cmd += self.environment_args(entry)
            cmd.append(str(ctx_path))
            step = {"current": "preparing the build"}

            def on_line(line: str):
                if (
                    line.startswith(("STEP ", "Step ", "#"))
                    or "[" in line[:12]
                    and "/" in line[:12]
                ):
                    step["current"] = line
                    self.progress(f"[{entry.name}] {line}")

            try:
                _run(cmd, env=self.env, step=f"[{entry.name}] build", on_line=on_line)
            except BuildError as e:
                raise BuildError(f"{e}\n  Failing step: {step['current']}") from None
        seconds = time.monotonic() - t0
        self._remove_replaced(previous, entry.ref)
        size = self.size(entry.ref)
        self.progress(f"[{entry.name}] built in {seconds:.0f} s, {size / 1e6:.0f} MB")
        return BuildResult(entry.name, entry.ref, "built", seconds, size)
