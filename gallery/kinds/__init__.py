"""What each kind of gallery asset does: check a source, snapshot it, and hand it to a user."""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger("workbench.gallery")

# the kinds, and the module and class of each (gallery/kinds/<module>.py)
KIND_CLASSES = {
    "notebook": ("gallery.kinds.notebook", "NotebookKind"),
    "image": ("gallery.kinds.image", "ImageKind"),
    "model": ("gallery.kinds.model", "ModelKind"),
    "dataset": ("gallery.kinds.dataset", "DatasetKind"),
}
KIND_NAMES = tuple(KIND_CLASSES)


@dataclass
class Snapshot:
    """What publishing one version of an asset copied: its files (already in the blob store),
    what the kind shows of it, the bytes counted toward the quota and the checked source."""

    files: list[dict]  # [{"path", "size", "sha256"}]
    meta: dict
    size: int
    source: dict
    # undoes side effects outside the blob store (an image tag) when the publish fails later
    cleanup: Callable[[], Awaitable[None]] | None = None


class Kind(Protocol):
    """One kind of asset (notebook, image, model, dataset)."""

    name: str

    def check_source(self, source) -> dict:
        """The source, checked for shape only; APIError(400, reason) otherwise."""

    async def snapshot(
        self, ctx: KindContext, owner: str, source: dict, asset_id: int, version: int
    ) -> Snapshot:
        """Copy the source into the blob store; APIError (4xx) for what the user can fix."""

    async def use(
        self, ctx: KindContext, caller: dict, asset: dict, version: dict, body: dict
    ) -> dict:
        """Hand a version to the caller; the kind's answer."""

    def use_fields(self) -> tuple[str, ...]:
        """The body fields use() accepts besides "version"."""


@dataclass
class KindContext:
    """What the kinds use of the platform (built once by gallery/setup.py).

    platform: the platform's objects by name (platform.get("model_registry"),
    "dataset_service", "dataset_versions", "image_service", "workspaces"); copier: copies
    from instances' storage (None on Kubernetes); image_checker: async ref -> whether the
    engine holds an image (None: not asked); work_dir: a folder on this machine for copies
    being checked (staging folders below it, see staging()).
    """

    db: Any
    hub: Any
    policy: Any
    settings: Any  # GallerySettings
    blobs: Any  # training_bridge.datasets.blobs.BlobStore
    platform: Any = None
    copier: Any = None
    image_checker: Any = None
    work_dir: Path | None = None
    extra: dict = field(default_factory=dict)

    def get(self, name: str, default=None):
        """A platform object by name (None where the platform has none)."""
        if self.platform is None:
            return default
        return self.platform.get(name, default)

    def staging(self, writable_by_containers: bool = False) -> Path:
        """A new empty folder below work_dir (blocking: call it in a thread); for the engine's
        copy containers, writable by the images' user. Remove it with discard()."""
        from inference_bridge.model_files import ModelFolders

        return ModelFolders(self.work_dir).staging(writable_by_containers)

    @staticmethod
    def discard(path: Path | None) -> None:
        """Remove a staging folder (blocking)."""
        if path is not None:
            shutil.rmtree(path, ignore_errors=True)


def load_kinds() -> dict[str, Kind]:
    """Every kind whose module is installed, by name (a kind whose module is missing is left
    out: publishing it answers 400)."""
    kinds = {}
    for name, (module, cls) in KIND_CLASSES.items():
        try:
            kinds[name] = getattr(import_module(module), cls)()
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
            log.warning("gallery: kind %s is not installed (%s)", name, module)
    return kinds


class _Kinds(dict):
    """KINDS: loaded on first use, so that importing this package imports no kind."""

    _loaded = False

    def _load(self):
        if not self._loaded:
            self._loaded = True
            self.update(load_kinds())

    def __getitem__(self, key):
        self._load()
        return super().__getitem__(key)

    def get(self, key, default=None):
        self._load()
        return super().get(key, default)

    def __contains__(self, key):
        self._load()
        return super().__contains__(key)

    def __iter__(self):
        self._load()
        return super().__iter__()

    def __len__(self):
        self._load()
        return super().__len__()

    def keys(self):
        self._load()
        return super().keys()

    def values(self):
        self._load()
        return super().values()

    def items(self):
        self._load()
        return super().items()


KINDS: dict[str, Kind] = _Kinds()

SLUG_RUN = re.compile(r"[^a-z0-9]+")


def slug(title: str, asset_id: int) -> str:
    """The folder name an asset is taken into: its title lowercased, runs of anything but
    [a-z0-9] as "-", at most 40 characters; "asset-<id>" when nothing is left."""
    text = SLUG_RUN.sub("-", (title or "").lower()).strip("-")[:40].strip("-")
    return text or f"asset-{asset_id}"


def human_size(n: int) -> str:
    """Bytes as people read them: 5 GiB, 4.8 GiB, 12 MiB, 300 KiB, 12 bytes."""
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= scale:
            text = f"{n / scale:.1f}".removesuffix(".0")
            return f"{text} {unit}"
    return f"{n} bytes"
