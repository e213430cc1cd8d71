"""Copying a folder or file of an instance's storage to the platform's machine: a short-lived
container on the engine mounts the storage read-only and a staging folder read-write."""

from __future__ import annotations

import asyncio
import logging
import secrets
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker

from spawner.container import find_instance_volume

log = logging.getLogger("workbench.models.copy")

SOURCE_DIR = "/src"
DEST_DIR = "/dst"
# exit codes of COPY_SCRIPT that are the user's to fix
MISSING, TOO_BIG, LINK = 2, 3, 4
# Runs as the images' user with no network and no capabilities. $1: the path in the storage
# (checked: relative, no '..'), $2: most bytes. Any symbolic link on the way is refused (the
# path would lead elsewhere); `cp -a` copies links inside as links, which the platform then
# refuses by name when it checks the copy.
COPY_SCRIPT = f"""\
set -eu
set -f
rel="$1"; limit="$2"; p={SOURCE_DIR}
saved_ifs=$IFS; IFS=/
for part in $rel; do
  p="$p/$part"
  if [ -L "$p" ]; then echo "${{p#{SOURCE_DIR}/}}" >&2; exit {LINK}; fi
done
IFS=$saved_ifs
src="{SOURCE_DIR}/$rel"
if [ ! -e "$src" ]; then exit {MISSING}; fi
size=$(du -sb -- "$src" | cut -f1)
if [ "$size" -gt "$limit" ]; then echo "$size" >&2; exit {TOO_BIG}; fi
if [ -d "$src" ]; then cp -a -- "$src/." {DEST_DIR}/; else cp -a -- "$src" {DEST_DIR}/; fi
"""
LABEL = "ai-workbench.model-copy"


async def copy_image(policy, image_checker, owner: str, server: dict) -> str:
    """The image that copies from an instance's storage: the instance's own where the engine
    still holds it, else the platform's default image. image_checker: async ref -> whether
    the engine holds it (None: not asked). APIError 409 when there is none."""
    from hub.service.api import APIError
    from spawner.options import InvalidOptions

    names = [(server.get("user_options") or {}).get("image"), policy.default_image]
    for name in names:
        if not isinstance(name, str) or not name:
            continue
        await policy.prefetch(owner, name)
        try:
            ref = policy.image(name, owner).ref
        except InvalidOptions:
            continue
        if image_checker is None or await image_checker(ref) is not False:
            return ref
    raise APIError(409, "No image to copy with is on this machine; build the default image.")


class StorageCopyError(Exception):
    """The copy is refused for a reason the user can fix; the message says which."""


class EngineStorageCopier:
    """Copies from instances' storage volumes on the engine (Docker or Podman) at `url`.

    prefix: the platform's container prefix (copy containers are named after it); run_as:
    the images' user, who owns what instances write; timeout: most seconds one copy runs.
    """

    def __init__(
        self,
        url: str,
        prefix: str,
        *,
        run_as: str = "1000:100",
        timeout: float = 3600,
        memory: int = 256 * 1024**2,
    ):
        self.url = url
        self.prefix = prefix
        self.run_as = run_as
        self.timeout = timeout
        self.memory = memory
        self.executor = ThreadPoolExecutor(4, thread_name_prefix="workbench-model-copy")
        self._api: docker.APIClient | None = None

    @property
    def api(self) -> docker.APIClient:
        if self._api is None:
            self._api = docker.APIClient(base_url=self.url, timeout=120)
        return self._api

    async def _call(self, fn, *args, **kwargs):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, lambda: fn(*args, **kwargs))

    async def volume(self, owner: str, instance: str) -> str:
        """The engine volume of the platform's instance's storage."""
        volume = await self._call(
            lambda: find_instance_volume(self.api, self.prefix, owner, instance)
        )
        if volume is None:
            raise StorageCopyError(
                f"The storage of instance {instance!r} was not found: start the instance once "
                "so that its storage is made."
            )
        return volume

    async def image_present(self, ref: str) -> bool:
        try:
            await self._call(lambda: self.api.inspect_image(ref))
            return True
        except docker.errors.ImageNotFound:
            return False

    async def copy(
        self,
        owner: str,
        instance: str,
        image_ref: str,
        path: str,
        dest: Path,
        limit: int,
        too_big: str = "a model may be: leave data and checkpoints out of its folder.",
    ) -> None:
        """Copy `path` of the instance's storage into the staging folder `dest` (a folder's
        contents, or the file itself); StorageCopyError for what the user can fix. too_big:
        the end of the message when it is over `limit` bytes ("...larger than N MiB <too_big>")."""
        volume = await self.volume(owner, instance)
        name = f"{self.prefix}-model-copy-{secrets.token_hex(4)}"
        api = self.api
        host_config = api.create_host_config(
            binds={
                volume: {"bind": SOURCE_DIR, "mode": "ro"},
                str(dest): {"bind": DEST_DIR, "mode": "rw"},
            },
            network_mode="none",
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            mem_limit=self.memory,
            memswap_limit=self.memory,
            pids_limit=64,
            read_only=True,
        )
        try:
            await self._call(
                api.create_container,
                image_ref,
                command=["sh", "-c", COPY_SCRIPT, "workbench-model-copy", path, str(limit)],
                name=name,
                user=self.run_as,
                working_dir="/",
                labels={"ai-workbench.user": owner, LABEL: instance},
                host_config=host_config,
            )
            await self._call(api.start, name)
            result = await self._call(lambda: api.wait(name, timeout=self.timeout))
            code = int(result.get("StatusCode", -1))
            text = await self._call(lambda: api.logs(name, stdout=True, stderr=True, tail=20))
            text = text.decode(errors="replace").strip()
        except docker.errors.ImageNotFound:
            raise StorageCopyError(
                f"The image {image_ref} to copy with is not on this machine."
            ) from None
        except Exception as e:
            if type(e).__name__ in ("ReadTimeout", "ConnectionError", "Timeout"):
                raise StorageCopyError(
                    f"Copying {path!r} of instance {instance!r} took longer than "
                    f"{self.timeout:g} s."
                ) from None
            raise
        finally:
            try:
                await self._call(api.remove_container, name, force=True)
            except docker.errors.NotFound:
                pass
            except Exception as e:  # noqa: BLE001 - logged; the copy's outcome stands
                log.warning("could not remove copy container %s: %s", name, e)
        if code == 0:
            return
        if code == MISSING:
            raise StorageCopyError(f"The storage of instance {instance!r} has no {path!r}.")
        if code == LINK:
            where = text.splitlines()[-1] if text else path
            raise StorageCopyError(
                f"{where!r} in the storage of instance "
                f"{instance!r} is a symbolic link: links are not followed; name the folder "
                "itself."
            )
        if code == TOO_BIG:
            raise StorageCopyError(
                f"{path!r} of instance {instance!r} is larger than the {limit // 1024**2} MiB "
                f"{too_big}"
            )
        raise StorageCopyError(
            f"Copying {path!r} of instance {instance!r} failed (exit code {code}): "
            f"{text[-500:] or 'no output'}"
        )

    async def close(self) -> None:
        self.executor.shutdown(wait=False)
        if self._api is not None:
            self._api.close()
