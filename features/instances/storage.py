"""What the API says of an instance's storage: its size, whether it is held to it, its use."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from hub.service.api import APIError
from spawner.container import LABEL_PREFIX, instance_object_name, make_volume_name
from spawner.storage_files import (
    GIB,
    LABEL,
    StorageFileError,
    fixed_size_support,
    grow_storage_file,
    mounted_usage,
    read_usage,
)

log = logging.getLogger("workbench.instances.storage")

# use at which the API and the panel warn; the storage is full below FULL_AVAILABLE bytes
# (or 2 %) available: ext4 keeps a little back, so writes fail before 100 %
WARN_PERCENT = 90.0
FULL_AVAILABLE = 32 * 1024**2
KUBERNETES_NOTE = (
    "A persistent volume claim of this size: the cluster's storage class holds the instance "
    "to it (most do; hostPath and some NFS classes do not)."
)
ENFORCED_NOTE = "Fixed size: writing past it fails with 'No space left on device'."
LEGACY_NOTE = (
    "Made before storage sizes were enforced here: the size is recorded only and the "
    "instance's files share the host's disk. Copy them to a new instance to get a fixed size."
)


def usage_warning(name: str, used: int, total: int, available: int) -> str | None:
    """What to tell the owner of storage nearly or wholly full (None below WARN_PERCENT)."""
    if total <= 0:
        return None
    percent = 100.0 * used / total
    full = available < min(FULL_AVAILABLE, total // 50)
    if percent < WARN_PERCENT and not full:
        return None
    grow = (
        f"delete files you no longer need, or stop the instance and grow its storage "
        f"(`workbench instances update {name} --storage N`, N in GiB)"
    )
    if full:
        return f"Storage full ({used / GIB:.1f} of {total / GIB:.1f} GiB): writes fail; {grow}."
    return f"Storage {percent:.0f}% full ({used / GIB:.1f} of {total / GIB:.1f} GiB): {grow}."


class InstanceStorage:
    """Reads instances' storage volumes on the engine (docker backend) for the API model, and
    grows a stopped instance's storage file. engine_kind is found on first use."""

    def __init__(self, settings, engine_url: str):
        self.settings = settings
        self.backend = settings.backend
        self.engine_url = engine_url
        self.folder = (settings.data_path / "storage").resolve()
        self._support: tuple[bool, str] | None = None
        self._api = None

    def _client(self):
        if self._api is None:
            import docker

            self._api = docker.APIClient(base_url=self.engine_url, timeout=30)
        return self._api

    async def support(self) -> tuple[bool, str]:
        """(whether new instances get a fixed size, why not) on this platform."""
        if self._support is None and not self.engine_url:
            return False, "The platform service was not told the engine's address."
        if self._support is None:
            from spawner.engine import detect_kind

            kind = await asyncio.to_thread(detect_kind, self.engine_url)
            self._support = fixed_size_support(
                self.settings.storage_fixed_size, kind, self.engine_url
            )
        return self._support

    async def volumes(self, user: str) -> dict[str, dict]:
        """{instance name: the engine's volume model} of a user's storage volumes."""
        filters = {"label": [f"{LABEL_PREFIX}.user={user}"]}
        found = await asyncio.to_thread(lambda: self._client().volumes(filters=filters))
        by_instance = {}
        for volume in (found or {}).get("Volumes") or []:
            instance = (volume.get("Labels") or {}).get(f"{LABEL_PREFIX}.instance")
            # this platform's volume of the instance, not another's on the same engine
            name = make_volume_name(
                instance_object_name(self.settings.container_prefix, user, instance or "")
            )
            if instance and volume.get("Name") == name:
                by_instance[instance] = volume
        return by_instance

    def _file_of(self, volume: dict) -> Path | None:
        """The storage file a volume is mounted from (only below the platform's folder)."""
        path = (volume.get("Labels") or {}).get(LABEL)
        if not path:
            return None
        path = Path(path).resolve()
        return path if self.folder in path.parents else None

    def _usage(self, volume: dict, path: Path) -> tuple[int, int, int] | None:
        """(total, used, available) bytes: the mounted file system's while an instance runs,
        else the file's own counts. Blocking."""
        try:
            mountpoint = volume.get("Mountpoint") or ""
            if mountpoint and os.path.ismount(mountpoint):
                return mounted_usage(mountpoint)
            return read_usage(path)
        except (OSError, StorageFileError) as e:
            log.warning("storage use of %s unknown: %s", path, e)
            return None

    async def annotate(self, user: str, models: list[dict]) -> None:
        """Set each instance model's "storage": size, enforced, use, a warning and a note."""
        if not models:
            return
        if self.backend != "docker":
            for model in models:
                model["storage"] = {
                    "size_gib": model["storage_gib"],
                    "enforced": None,
                    "used_bytes": None,
                    "total_bytes": None,
                    "available_bytes": None,
                    "warning": None,
                    "note": KUBERNETES_NOTE,
                }
            return
        enforced_here, why_not = await self.support()
        try:
            volumes = await self.volumes(user) if self.engine_url else {}
        except Exception as e:  # noqa: BLE001 - the model stands without the engine's view
            log.warning("storage volumes of %s unknown: %s", user, e)
            volumes = {}

        def read():
            result = {}
            for name, volume in volumes.items():
                path = self._file_of(volume)
                result[name] = (path, self._usage(volume, path) if path else None)
            return result

        found = await asyncio.to_thread(read)
        for model in models:
            path, usage = found.get(model["name"], (None, None))
            if path is not None:
                enforced, note = True, ENFORCED_NOTE
            elif model["name"] in volumes:
                enforced, note = False, (LEGACY_NOTE if enforced_here else why_not)
            else:
                # no storage yet: made at the first start, as the platform makes it now
                enforced, note = enforced_here, (ENFORCED_NOTE if enforced_here else why_not)
            total, used, available = usage if usage else (None, None, None)
            model["storage"] = {
                "size_gib": model["storage_gib"],
                "enforced": enforced,
                "used_bytes": used,
                "total_bytes": total,
                "available_bytes": available,
                "warning": usage_warning(model["name"], used, total, available) if usage else None,
                "note": note,
            }

    async def grow(self, user: str, name: str, size_gib: int) -> bool:
        """Grow a stopped instance's storage file to size_gib GiB; False when its storage
        has no file (the size is only recorded). APIError when it cannot be grown."""
        if self.backend != "docker":
            raise APIError(
                400,
                "On Kubernetes the storage size is the persistent volume claim's: ask an "
                "administrator to expand it (its storage class must allow expansion).",
            )
        volume = (await self.volumes(user)).get(name)
        path = self._file_of(volume) if volume else None
        if path is None:
            return False
        mountpoint = volume.get("Mountpoint") or ""
        if mountpoint and await asyncio.to_thread(os.path.ismount, mountpoint):
            raise APIError(
                409,
                f"The storage of instance {name!r} is still in use (a job or a copy reads it): "
                "try again when they have finished.",
            )
        try:
            await asyncio.to_thread(grow_storage_file, path, size_gib)
        except StorageFileError as e:
            raise APIError(500, f"Growing the storage of {name!r} failed: {e}") from None
        log.info("instance %s/%s: storage grown to %s GiB", user, name, size_gib)
        return True
