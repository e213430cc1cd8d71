"""The image catalogs: the preset images the platform offers, its own images, and their names."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

# libyaml's parser where PyYAML has it: about ten times faster than the pure-Python one,
# and every instance start reads the catalog and flavors
SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(text: str):
    """Parse YAML text as yaml.safe_load does."""
    return yaml.load(text, Loader=SafeLoader)  # noqa: S506 - a safe loader


HERE = Path(__file__).parent
DEFAULT_CATALOG = HERE / "catalog.yaml"
# the platform's own images (the hub's): built and deployed, never offered to users
PLATFORM_CATALOG = HERE / "catalog-platform.yaml"
PLATFORM_KIND = "platform"

TAG_RE = re.compile(
    r"^(?P<engine>[a-z0-9]+)_(?P<version>[0-9][0-9a-z.]*)"
    r"-(?P<processor>cpu|cuda_[0-9]+\.[0-9]+)"
    r"-py_(?P<python>[0-9]+\.[0-9]+)"
    r"-(?P<os>[a-z]+_[0-9.]+)"
    r"-(?P<arch>x86_64|aarch64)$"
)
# a platform image's tag: <component>_<platform version>-py_<x.y>-<os>_<version>-<arch>
PLATFORM_TAG_RE = re.compile(
    r"^(?P<engine>[a-z0-9]+)_(?P<version>[0-9][0-9a-z.]*)"
    r"-py_(?P<python>[0-9]+\.[0-9]+)"
    r"-(?P<os>[a-z]+_[0-9.]+)"
    r"-(?P<arch>x86_64|aarch64)$"
)


class CatalogError(ValueError):
    """The catalog file is malformed."""


class UnknownImage(LookupError):
    """No image of that name is in the catalog."""

    def __init__(self, name: str, known: list[str]):
        self.name = name
        self.known = known
        super().__init__(f"Unknown image {name!r}. Known images: {', '.join(known) or 'none'}.")


@dataclass(frozen=True)
class Environment:
    """One Python environment inside an image, exposed as a Jupyter kernel."""

    name: str
    display_name: str
    path: str
    engine: str = ""
    kernel: str = ""  # the kernel's name; default: the environment's

    @property
    def kernel_name(self) -> str:
        return self.kernel or self.name


@dataclass(frozen=True)
class ImageEntry:
    """One image of the catalog."""

    name: str
    repository: str
    tag: str
    description: str
    dockerfile: str
    engine: str
    engine_version: str
    processor: str
    python: str
    os: str
    arch: str
    environments: tuple[Environment, ...] = field(default_factory=tuple)
    base: str = ""
    build_args: tuple[tuple[str, str], ...] = ()  # extra Dockerfile arguments, e.g. CUDA_IMAGE
    platform: bool = False  # one of the platform's own images (catalog-platform.yaml)
    extras: tuple[str, ...] = ()  # platform images: the ai-workbench extras they install

    @property
    def ref(self) -> str:
        """The full image reference, repository:tag."""
        return f"{self.repository}:{self.tag}"

    def to_dict(self) -> dict:
        """The JSON model used by the API."""
        return {
            "name": self.name,
            "ref": self.ref,
            "repository": self.repository,
            "tag": self.tag,
            "description": self.description,
            "engine": self.engine,
            "engine_version": self.engine_version,
            "processor": self.processor,
            "python": self.python,
            "os": self.os,
            "arch": self.arch,
            "environments": [
                {
                    "name": e.name,
                    "kernel": e.kernel_name,
                    "display_name": e.display_name,
                    "engine": e.engine,
                }
                for e in self.environments
            ],
            "kind": "preset",
        }


class Catalog:
    """The preset images, in catalog order, looked up by name or reference."""

    def __init__(self, entries: list[ImageEntry], registry: str = ""):
        self.entries = list(entries)
        self.registry = registry  # the prefix its "{registry}" stands for, e.g. "localhost/"
        self._by_name = {e.name: e for e in self.entries}
        self._by_ref = {e.ref: e for e in self.entries}

    def __iter__(self):
        return iter(self.entries)

    def __len__(self):
        return len(self.entries)

    @property
    def names(self) -> list[str]:
        return [e.name for e in self.entries]

    def get(self, name_or_ref: str) -> ImageEntry:
        """The entry with that name (or full reference); raises UnknownImage."""
        entry = self._by_name.get(name_or_ref) or self._by_ref.get(name_or_ref)
        if entry is None:
            raise UnknownImage(name_or_ref, self.names)
        return entry

    def build_order(self, names: list[str] | None = None) -> list[ImageEntry]:
        """The entries to build for `names` (all if empty), bases first."""
        wanted = [self.get(n) for n in names] if names else list(self.entries)
        order: list[ImageEntry] = []

        def visit(entry: ImageEntry):
            if entry.base:
                visit(self.get(entry.base))
            if entry not in order:
                order.append(entry)

        for entry in wanted:
            visit(entry)
        return order


def _registry_prefix(registry: str) -> str:
    """The registry as the catalogs' "{registry}" takes it: empty, or ending in "/"."""
    return registry if not registry or registry.endswith("/") else registry + "/"


def _parse_entry(raw: dict, registry: str, platform: bool = False) -> ImageEntry:
    required = ("name", "repository", "tag", "description", "dockerfile")
    missing = [k for k in required if not raw.get(k)]
    if missing:
        raise CatalogError(f"catalog entry {raw.get('name', raw)!r} lacks {', '.join(missing)}")
    match = (PLATFORM_TAG_RE if platform else TAG_RE).match(raw["tag"])
    if not match:
        form = (
            "<component>_<version>-py_<x.y>-<os>_<version>-<arch>"
            if platform
            else "<engine>_<version>-<cpu|cuda_x.y>-py_<x.y>-<os>_<version>-<arch>"
        )
        raise CatalogError(f"image {raw['name']!r}: tag {raw['tag']!r} does not follow {form}")
    envs = tuple(
        Environment(
            name=e["name"],
            display_name=e["display_name"],
            path=e["path"],
            engine=e.get("engine", ""),
            kernel=e.get("kernel", ""),
        )
        for e in raw.get("environments", [])
    )
    if not envs and not platform:
        raise CatalogError(f"image {raw['name']!r} lists no environments")
    if platform and (envs or raw.get("base")):
        raise CatalogError(
            f"platform image {raw['name']!r}: platform images have no kernel environments "
            "and build on the bootstrapped Debian base (no `environments` or `base`)"
        )
    return ImageEntry(
        name=raw["name"],
        repository=raw["repository"].replace("{registry}", registry),
        tag=raw["tag"],
        description=raw["description"],
        dockerfile=raw["dockerfile"],
        engine=str(raw.get("engine", match["engine"])),
        engine_version=str(raw.get("engine_version", match["version"])),
        processor=str(raw.get("processor", "cpu" if platform else match["processor"])),
        python=str(raw.get("python", match["python"])),
        os=str(raw.get("os", match["os"])),
        arch=str(raw.get("arch", match["arch"])),
        environments=envs,
        base=raw.get("base", ""),
        build_args=tuple((str(k), str(v)) for k, v in (raw.get("build_args") or {}).items()),
        platform=platform,
        extras=tuple(str(x) for x in raw.get("extras") or ()),
    )


def _read(path: Path) -> dict:
    try:
        data = load_yaml(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise CatalogError(f"cannot read image catalog {path}: {e}") from e
    return data or {}


def _entries(data: dict, path: Path, registry: str, platform: bool) -> list[ImageEntry]:
    entries = [_parse_entry(raw, registry, platform) for raw in data.get("images", [])]
    names = [e.name for e in entries]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise CatalogError(f"duplicate image names in {path}: {', '.join(sorted(dupes))}")
    return entries


def load_catalog(path: str | Path | None = None, registry: str = "localhost/") -> Catalog:
    """Read the catalog file (the shipped one by default)."""
    path = Path(path) if path else DEFAULT_CATALOG
    data = _read(path)
    if data.get("kind") == PLATFORM_KIND:
        raise CatalogError(
            f"{path} lists the platform's own images, which are not instance images: build "
            "one by name (`workbench images build hub`) and keep instance catalogs apart"
        )
    registry = _registry_prefix(registry)
    catalog = Catalog(_entries(data, path, registry, platform=False), registry=registry)
    for entry in catalog:
        if entry.base:
            catalog.get(entry.base)
    return catalog


def load_platform_catalog(path: str | Path | None = None, registry: str = "localhost/") -> Catalog:
    """Read the platform's own images (images/catalog-platform.yaml by default): the hub's
    image. Never part of what users pick from; the image build command builds them by name."""
    path = Path(path) if path else PLATFORM_CATALOG
    data = _read(path)
    if data.get("kind") != PLATFORM_KIND:
        raise CatalogError(f"{path} is no platform catalog (it lacks `kind: {PLATFORM_KIND}`)")
    registry = _registry_prefix(registry)
    return Catalog(_entries(data, path, registry, platform=True), registry=registry)


def platform_image_ref(name: str, registry: str = "") -> str:
    """The reference of one of the platform's own images, e.g. platform_image_ref("hub") is
    "ai-workbench/hub:workbench_0.1.0-py_3.11-debian_12-x86_64" and
    platform_image_ref("hub", "registry.example.com") puts "registry.example.com/" before it.
    Raises UnknownImage for a name the platform catalog lacks."""
    return load_platform_catalog(registry=registry).get(name).ref
