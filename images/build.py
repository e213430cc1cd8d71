"""Building the catalog's images: wheelhouse, base OS bootstrap, engine build with progress."""

from __future__ import annotations

import configparser
import email.parser
import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .catalog import Catalog, CatalogError, ImageEntry, UnknownImage, load_platform_catalog
from .overrides import OVERRIDES_FILE, read_overrides, relax_wheel

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
KERNEL_INSTALLER = HERE.parent / "kernels" / "install_kernel.py"
# installs the platform's packages in every image's last layers (each Dockerfile runs it)
PLATFORM_INSTALLER = HERE / "base" / "install_platform.sh"
# This repository's own packages, built into wheels on the host, which every image installs in
# its last layers (from platform-wheels/ in the build context), so that new versions of them
# rebuild those layers only. The JupyterLab extensions go into the server's environment
# (/opt/jupyter; they need Node.js to build); the platform's Python client (`import workbench`),
# with its dependencies, into every environment, the server's and each kernel's.
SERVER_PACKAGES = [HERE.parent / "labextensions" / "workbench"]
CLIENT_PACKAGE = HERE.parent / "client"
PLATFORM_WHEELS = "platform-wheels"
# The stage of a base image's Dockerfile that holds everything but the platform's packages.
# Images built on that base start from it (tagged <ref>-core), so that new versions of the
# packages rebuild no environment; each installs them itself. Without it: from its image.
CORE_STAGE = "core"
BUILD_OUTPUTS = {"node_modules", "lib", "dist", "labextension", "__pycache__", ".ipynb_checkpoints"}
# what builds and tools leave in a Python package's folder: never part of its sources
TOOL_OUTPUTS = {"build", ".venv", ".pytest_cache", ".ruff_cache", ".mypy_cache"}
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

# The platform's own images (catalog-platform.yaml: the hub's) install, instead of kernels and
# the JupyterLab panel, the platform's distribution (ai-workbench, with the entry's extras) and
# the client from wheels built on the host, their dependencies from a wheelhouse fetched once,
# and the platform's Node.js parts (package.json: configurable-http-proxy), installed on the
# host with npm ci and copied in, so the build runs offline but for Debian's packages.
PROJECT = HERE.parent
PROJECT_FILES = [PROJECT / "setup.cfg", PROJECT / "pyproject.toml", PROJECT / "README.md"]
NODE_PARTS = [PROJECT / "package.json", PROJECT / "package-lock.json"]
NODE_CONTEXT = "node"
# dependencies published only as sources that one build turns into pure-Python wheels, at most
MAX_SDIST_BUILDS = 5

Progress = Callable[[str], None]


def _is_output(parts: tuple[str, ...]) -> bool:
    """Whether a path (its parts, relative to a package) is a build or tool output."""
    return bool((BUILD_OUTPUTS | TOOL_OUTPUTS) & set(parts)) or any(
        part.endswith((".egg-info", ".tsbuildinfo")) for part in parts
    )


def source_hash(package: Path) -> str:
    """Hash of a package's sources, without its build outputs and installed node modules."""
    h = hashlib.sha256()
    for f in sorted(package.rglob("*")):
        rel = f.relative_to(package)
        if not f.is_file() or _is_output(rel.parts):
            continue
        h.update(str(rel).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def wheel_requirements(wheel: Path) -> list[str]:
    """A wheel's dependencies (Requires-Dist), without those only its extras ask for."""
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n))
        metadata = email.parser.Parser().parsestr(z.read(name).decode())
    return [
        r
        for r in metadata.get_all("Requires-Dist") or []
        if not re.search(r"\bextra\s*==", r.partition(";")[2])
    ]


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


def platform_packages() -> list[Path]:
    """The folders of the platform's distribution (setup.cfg's packages.find include)."""
    cfg = configparser.ConfigParser()
    cfg.read(PROJECT / "setup.cfg")
    names = {
        pattern.rstrip("*").rstrip(".")
        for pattern in cfg.get("options.packages.find", "include", fallback="").split()
    }
    return sorted(PROJECT / name for name in names if (PROJECT / name).is_dir())


def platform_source_hash() -> str:
    """Hash of the platform distribution's sources: its packages and its project files."""
    parts = [f"{p.name}:{source_hash(p)}" for p in platform_packages()]
    return _sha(*(f for f in PROJECT_FILES if f.exists()), extra=",".join(parts))


def _link_or_copy(src, dst):
    try:
        os.link(src, dst)
    except OSError:  # another filesystem
        shutil.copy2(src, dst)
    return dst


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
        platform: Catalog | None = None,
    ):
        self.catalog = catalog
        # the platform's own images, built by name only (default: catalog-platform.yaml)
        self._platform = platform
        self.cli = cli
        self.cache_dir = Path(cache_dir)
        self.env = dict(env or os.environ)
        if engine_url and Path(cli).name == "docker":
            # the docker CLI talks to the engine through its API; podman uses its storage
            self.env["DOCKER_HOST"] = engine_url
        self.progress = progress
        self.pip = pip or [sys.executable, "-m", "pip"]

    @property
    def platform(self) -> Catalog:
        """The platform's own images (catalog-platform.yaml), with the catalog's registry."""
        if self._platform is None:
            self._platform = load_platform_catalog(registry=self.catalog.registry)
        return self._platform

    def build_order(self, names: list[str] | None = None) -> list[ImageEntry]:
        """What to build for `names`, bases first: every instance image without names; a
        name of the platform catalog (e.g. "hub") builds that platform image."""
        if not names:
            return self.catalog.build_order()
        instance, platform = [], []
        for name in names:
            if name in self.catalog.names:
                instance.append(name)
                continue
            try:
                entry = self.platform.get(name)
            except (UnknownImage, CatalogError):
                known = self.catalog.names + self._platform_names()
                raise UnknownImage(name, known) from None
            if entry not in platform:
                platform.append(entry)
        return (self.catalog.build_order(instance) if instance else []) + platform

    def _platform_names(self) -> list[str]:
        try:
            return self.platform.names
        except CatalogError:
            return []

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
        overrides = self.image_dir(entry) / OVERRIDES_FILE
        house = self.cache_dir / "wheels" / entry.dockerfile
        stamp = house / ".complete"
        inputs = [*reqs, overrides] if overrides.exists() else reqs
        digest = _sha(*inputs, extra=IMAGE_PYTHON + ",".join(IMAGE_PLATFORMS))
        if stamp.exists() and stamp.read_text() == digest:
            self.progress(f"[{entry.name}] wheelhouse up to date ({house})")
            return house
        if not reqs:
            house.mkdir(parents=True, exist_ok=True)
            stamp.write_text(digest)
            return house
        house.mkdir(parents=True, exist_ok=True)
        self.progress(f"[{entry.name}] fetching wheels into {house}")
        args = [part for req in reqs for part in ("-r", str(req))]
        if overrides.exists():
            args += ["--find-links", str(self.relaxed_wheels(entry, overrides))]
        _run(self._download_cmd(house, args), step=f"[{entry.name}] fetching wheels")
        stamp.write_text(digest)
        return house

    def relaxed_wheels(self, entry: ImageEntry, overrides: Path) -> Path:
        """A folder with the wheels an image's overrides file names, rewritten (overrides.py)."""
        folder = self.cache_dir / "wheels" / f"{entry.dockerfile}-relaxed"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for requirement, replacement in read_overrides(overrides):
            with tempfile.TemporaryDirectory(prefix="workbench-relax-") as tmp:
                step = f"[{entry.name}] fetching {requirement} to relax"
                _run(self._download_cmd(Path(tmp), ["--no-deps", requirement]), step=step)
                for wheel in Path(tmp).glob("*.whl"):
                    relaxed = relax_wheel(wheel, [replacement], folder)
                    self.progress(f"[{entry.name}] {relaxed.name}: {replacement}")
        return folder

    def _download_cmd(self, house: Path, args: list[str]) -> list[str]:
        """pip download of args into house, for the images' interpreter (Debian 12's), not
        the build host's."""
        return [
            *self.pip,
            "download",
            "--quiet",
            "--only-binary=:all:",
            f"--python-version={IMAGE_PYTHON}",
            "--implementation=cp",
            *(f"--platform={p}" for p in IMAGE_PLATFORMS),
            "--dest",
            str(house),
            *args,
        ]

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

    def client_wheel(self) -> Path:
        """The client's wheel, built (once per source version) from a copy of its sources,
        so that the build leaves nothing in the package's folder."""
        if not (CLIENT_PACKAGE / "pyproject.toml").exists():
            raise BuildError(f"building the client wheel: no Python package at {CLIENT_PACKAGE}")
        out = self.cache_dir / "wheels" / "local" / f"client-{source_hash(CLIENT_PACKAGE)}"
        built = sorted(out.glob("*.whl"))
        if not built:
            self.progress(f"building the client wheel from {CLIENT_PACKAGE}")
            with tempfile.TemporaryDirectory(prefix="workbench-client-") as tmp:
                copy = Path(tmp) / CLIENT_PACKAGE.name
                shutil.copytree(
                    CLIENT_PACKAGE,
                    copy,
                    ignore=lambda folder, names: [n for n in names if _is_output((n,))],
                )
                _run(
                    [*self.pip, "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out)]
                    + [str(copy)],
                    step=f"building the client wheel from {CLIENT_PACKAGE}",
                )
            built = sorted(out.glob("*.whl"))
        if len(built) != 1:
            raise BuildError(f"building the client wheel: expected one wheel in {out}: {built}")
        return built[0]

    def client_wheels(self) -> list[Path]:
        """The client's wheel and its dependencies' wheels for the images' interpreter; the
        dependencies are fetched once per set of requirements, offline after."""
        wheel = self.client_wheel()
        reqs = wheel_requirements(wheel)
        digest = _sha(extra=IMAGE_PYTHON + ",".join(IMAGE_PLATFORMS) + "|" + "|".join(reqs))
        house = self.cache_dir / "wheels" / f"client-deps-{digest}"
        stamp = house / ".complete"
        if not stamp.exists():
            house.mkdir(parents=True, exist_ok=True)
            if reqs:
                self.progress(f"fetching the client's dependencies into {house}")
                _run(self._download_cmd(house, reqs), step="fetching the client's dependencies")
            stamp.write_text(digest)
        return [wheel, *sorted(house.glob("*.whl"))]

    def platform_wheel(self) -> Path:
        """The platform distribution's wheel (ai-workbench), built (once per source version)
        from a copy of its packages and project files, so that the build leaves nothing in
        the project's folder."""
        out = self.cache_dir / "wheels" / "local" / f"ai-workbench-{platform_source_hash()}"
        built = sorted(out.glob("*.whl"))
        if not built:
            self.progress(f"building the ai-workbench wheel from {PROJECT}")
            with tempfile.TemporaryDirectory(prefix="workbench-platform-") as tmp:
                copy = Path(tmp) / "ai-workbench"
                copy.mkdir()
                for f in PROJECT_FILES:
                    if f.exists():
                        shutil.copy2(f, copy / f.name)
                for package in platform_packages():
                    shutil.copytree(
                        package,
                        copy / package.name,
                        ignore=lambda folder, names: [n for n in names if _is_output((n,))],
                    )
                _run(
                    [*self.pip, "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out)]
                    + [str(copy)],
                    step=f"building the ai-workbench wheel from {PROJECT}",
                )
            built = sorted(out.glob("*.whl"))
        if len(built) != 1:
            raise BuildError(f"building the ai-workbench wheel: expected one wheel in {out}")
        return built[0]

    def platform_dependencies(self, entry: ImageEntry, wheels: list[Path]) -> list[Path]:
        """The wheels every dependency of the platform's wheels needs (with the entry's
        extras), for the images' interpreter; fetched once per set of requirements."""
        metadata = []
        for wheel in wheels:
            with zipfile.ZipFile(wheel) as z:
                name = next(
                    n for n in z.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n)
                )
                parsed = email.parser.Parser().parsestr(z.read(name).decode())
            metadata += parsed.get_all("Requires-Dist") or []
        extras = ",".join(entry.extras)
        digest = _sha(
            extra=IMAGE_PYTHON + ",".join(IMAGE_PLATFORMS) + "|" + extras + "|" + "|".join(metadata)
        )
        house = self.cache_dir / "wheels" / f"platform-deps-{digest}"
        stamp = house / ".complete"
        local = {w.name for w in wheels}
        if not stamp.exists():
            house.mkdir(parents=True, exist_ok=True)
            self.progress(f"[{entry.name}] fetching the platform's dependencies into {house}")
            # the local wheels by path: pip takes them as they are, never an index's namesake
            first, *others = wheels
            wanted = [f"{first}[{extras}]" if extras else str(first), *map(str, others)]
            pure = self.cache_dir / "wheels" / "platform-pure"
            pure.mkdir(parents=True, exist_ok=True)
            for attempt in range(MAX_SDIST_BUILDS + 1):
                try:
                    _run(
                        self._download_cmd(house, [*wanted, "--find-links", str(pure)]),
                        step=f"[{entry.name}] fetching the platform's dependencies",
                    )
                    break
                except BuildError as e:
                    missing = re.search(r"No matching distribution found for ([\w.-]+)", str(e))
                    if not missing or attempt == MAX_SDIST_BUILDS:
                        raise
                    self.pure_wheel(missing[1], pure, entry)
            for name in local:
                (house / name).unlink(missing_ok=True)
            stamp.write_text(digest)
        return sorted(w for w in house.glob("*.whl") if w.name not in local)

    def pure_wheel(self, requirement: str, folder: Path, entry: ImageEntry) -> Path:
        """A wheel built on the host of a dependency published only as source (such as
        onetimepass, which the native authenticator needs); only pure Python fits every
        interpreter, so anything else is refused with what to do."""
        self.progress(f"[{entry.name}] {requirement} has no wheel: building it from its sources")
        with tempfile.TemporaryDirectory(prefix="workbench-sdist-") as tmp:
            _run(
                [*self.pip, "wheel", "--quiet", "--no-deps", "--wheel-dir", tmp, requirement],
                step=f"[{entry.name}] building a wheel of {requirement}",
            )
            built = sorted(Path(tmp).glob("*.whl"))
            if not built or not built[0].name.endswith("-none-any.whl"):
                raise BuildError(
                    f"[{entry.name}] {requirement} has no wheel for Python {IMAGE_PYTHON} on "
                    f"manylinux and its sources build no pure-Python wheel ({built}): add a "
                    "wheel of it to the build host's pip find-links"
                )
            return Path(shutil.copy2(built[0], folder / built[0].name))

    def node_modules(self) -> Path:
        """The platform's Node.js parts (package.json and its lock: configurable-http-proxy),
        installed once per lock with `npm ci` on the build host; images copy the folder, so
        their builds need no npm and no registry."""
        missing = [str(f) for f in NODE_PARTS if not f.exists()]
        if missing:
            raise BuildError(
                f"installing the platform's Node.js parts: {', '.join(missing)} missing "
                "(they ship with the project's sources)"
            )
        out = self.cache_dir / "node" / f"platform-{_sha(*NODE_PARTS)}"
        stamp = out / ".complete"
        if not stamp.exists():
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)
            for f in NODE_PARTS:
                shutil.copy2(f, out / f.name)
            self.progress(f"installing the platform's Node.js parts into {out} (npm ci)")
            _run(
                ["npm", "ci", "--omit=dev", "--ignore-scripts", "--no-audit", "--no-fund"]
                + ["--prefix", str(out)],
                step="installing the platform's Node.js parts (npm ci)",
            )
            stamp.write_text("done")
        return out / "node_modules"

    def source_url(self) -> str:
        """Where the platform's sources live (the image's org.opencontainers.image.source):
        the checkout's origin remote, if it has one."""
        out = subprocess.run(
            ["git", "-C", str(PROJECT), "remote", "get-url", "origin"],
            capture_output=True,
            text=True,
        )
        return out.stdout.strip() if out.returncode == 0 else ""

    def platform_args(self, entry: ImageEntry) -> list[str]:
        """A platform image's build arguments: its version and where its sources live."""
        args = [("VERSION", entry.engine_version), ("SOURCE_URL", self.source_url())]
        return [part for key, value in args for part in ("--build-arg", f"{key}={value}")]

    def core_ref(self, entry: ImageEntry) -> str:
        """Where the CORE_STAGE of a base image's Dockerfile is tagged."""
        return f"{entry.ref}-{CORE_STAGE}"

    def _has_core_stage(self, entry: ImageEntry) -> bool:
        dockerfile = (self.image_dir(entry) / "Dockerfile").read_text()
        return bool(re.search(rf"(?im)^FROM\s+\S+\s+AS\s+{CORE_STAGE}\s*$", dockerfile))

    def _builds_core(self, entry: ImageEntry) -> bool:
        """Whether a build of entry also tags its core stage: others build on it."""
        return any(e.base == entry.name for e in self.catalog) and self._has_core_stage(entry)

    def foundation_ref(self, entry: ImageEntry) -> str:
        """What the images built on entry start from: its core stage, or else its image."""
        return self.core_ref(entry) if self._builds_core(entry) else entry.ref

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
            # openssh-server's install made host keys: no image may carry a private key that
            # every image built here would share (instances' sshd makes its own at start)
            for key in Path(root, "etc", "ssh").glob("ssh_host_*"):
                key.unlink()
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
        base = self.foundation_ref(self.catalog.get(entry.base)) if entry.base else BASE_OS_IMAGE
        base_id = self._inspect(base, "{{.Id}}") or ""
        args = " ".join(self.environment_args(entry))
        if entry.platform:
            args += " ".join(["", *self.platform_args(entry)])
            args += f"|{platform_source_hash()},{source_hash(CLIENT_PACKAGE)}"
            return _sha(self.image_dir(entry), *NODE_PARTS, extra=f"{entry.ref}|{base_id}|{args}")
        # every image's last layers
        args += "|" + ",".join(source_hash(p) for p in [*SERVER_PACKAGES, CLIENT_PACKAGE])
        return _sha(
            self.image_dir(entry),
            KERNEL_INSTALLER,
            PLATFORM_INSTALLER,
            extra=f"{entry.ref}|{base_id}|{args}",
        )

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
        order = self.build_order(names)
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
        core = self.core_ref(entry) if self._builds_core(entry) else None
        if not force and self.built_hash(entry.ref) == digest and (not core or self.exists(core)):
            self.progress(f"[{entry.name}] up to date")
            return BuildResult(entry.name, entry.ref, "up to date", 0.0, self.size(entry.ref))
        previous = self._inspect(entry.ref, "{{.Id}}")
        with tempfile.TemporaryDirectory(prefix=f"workbench-build-{entry.name}-") as ctx:
            ctx_path = Path(ctx)
            for item in self.image_dir(entry).iterdir():
                if item.is_file():
                    shutil.copy2(item, ctx_path / item.name)
            wheels = ctx_path / "wheels"
            wheels.mkdir()
            platform = ctx_path / PLATFORM_WHEELS
            platform.mkdir()
            if entry.platform:
                own = [self.platform_wheel(), self.client_wheel()]
                pairs = [
                    *((w, wheels) for w in self.platform_dependencies(entry, own)),
                    *((w, platform) for w in own),
                ]
                shutil.copytree(
                    self.node_modules(),
                    ctx_path / NODE_CONTEXT / "node_modules",
                    symlinks=True,
                    copy_function=_link_or_copy,
                )
            else:
                house = self.wheelhouse(entry)
                shutil.copy2(KERNEL_INSTALLER, ctx_path / "install_kernel.py")
                shutil.copy2(PLATFORM_INSTALLER, ctx_path / PLATFORM_INSTALLER.name)
                pairs = [
                    *((w, wheels) for w in house.glob("*.whl")),
                    *((w, platform) for w in [*self.server_wheels(), *self.client_wheels()]),
                ]
            for whl, folder in pairs:
                _link_or_copy(whl, folder / whl.name)
            args = [self.cli, "build"]
            if entry.base:
                base = self.foundation_ref(self.catalog.get(entry.base))
                args += ["--build-arg", f"BASE_IMAGE={base}"]
            else:
                args += ["--build-arg", f"BASE_IMAGE={BASE_OS_IMAGE}"]
            args += self.environment_args(entry)
            if entry.platform:
                args += self.platform_args(entry)
                # the dependency wheels' names (versions included): their layer's cache key
                names = ",".join(sorted(p.name for p in wheels.glob("*.whl")))
                args += ["--build-arg", f"WHEELS={_sha(extra=names)}"]
            # the core stage first (no label: its id stays while its inputs do), then the
            # image, which finds every layer up to the core's in the cache
            builds = [[*args, "--target", CORE_STAGE, "--tag", core]] if core else []
            builds.append([*args, "--tag", entry.ref, "--label", f"{BUILD_HASH_LABEL}={digest}"])
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
                for cmd in builds:
                    _run(
                        [*cmd, str(ctx_path)],
                        env=self.env,
                        step=f"[{entry.name}] build",
                        on_line=on_line,
                    )
            except BuildError as e:
                raise BuildError(f"{e}\n  Failing step: {step['current']}") from None
        seconds = time.monotonic() - t0
        self._remove_replaced(previous, entry.ref)
        size = self.size(entry.ref)
        self.progress(f"[{entry.name}] built in {seconds:.0f} s, {size / 1e6:.0f} MB")
        return BuildResult(entry.name, entry.ref, "built", seconds, size)
