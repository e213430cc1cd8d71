"""Instance storage of a fixed size on one machine: an ext4 file system in a sparse file.

The Docker-API spawner gives each new instance a volume that Podman mounts from such a file
(the local driver's `type=ext4`, `device=<file>`, `o=loop`), so the instance sees a disk of
its own size: `df` shows it, and writing past it fails with "No space left on device"
instead of filling the host. The file is sparse: it takes host disk only for what is written
(and about 0.01 % for the file system's own tables). Growing a stopped instance's storage
enlarges the file and its file system; shrinking is never done.

Everything here blocks (it runs mkfs, e2fsck, resize2fs or reads the file): call it in a
thread.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path

GIB = 1024**3
# the local volume driver's options of a fixed-size volume (no devices, no set-uid files)
MOUNT_OPTIONS = "loop,nodev,nosuid"
LABEL = "ai-workbench.storage-file"
SUFFIX = ".ext4"
# an ext4 superblock: 1024 bytes in, magic 0xEF53 at offset 56
SUPERBLOCK_OFFSET = 1024
EXT4_MAGIC = 0xEF53
TOOLS = ("mkfs.ext4", "e2fsck", "resize2fs", "debugfs")


class StorageFileError(RuntimeError):
    """A storage file could not be made or grown; the message says why."""


def missing_tools() -> list[str]:
    """The e2fsprogs commands this machine lacks (none: fixed-size storage can be made)."""
    return [tool for tool in TOOLS if _which(tool) is None]


def _which(tool: str) -> str | None:
    return shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")


def _run(*command: str, ok: tuple[int, ...] = (0,)) -> str:
    tool = _which(command[0])
    if tool is None:
        raise StorageFileError(
            f"{command[0]} is not installed: install e2fsprogs (`apt-get install e2fsprogs`)."
        )
    done = subprocess.run(
        [tool, *command[1:]], capture_output=True, text=True, timeout=600, check=False
    )
    if done.returncode not in ok:
        raise StorageFileError(
            f"{command[0]} failed (exit code {done.returncode}): "
            f"{(done.stderr or done.stdout).strip()[-500:]}"
        )
    return done.stdout


def storage_file(folder: str | os.PathLike, volume: str) -> Path:
    """Where the file of a volume's file system is kept."""
    if "/" in volume or volume.startswith("."):
        raise ValueError(f"not a volume name: {volume!r}")
    return Path(folder) / f"{volume}{SUFFIX}"


def make_storage_file(path: Path, size_gib: int, owner: str = "1000:100") -> None:
    """A new sparse file of size_gib GiB holding an empty ext4 file system whose root folder
    belongs to owner ("uid:gid"); it has no lost+found, so the instance's folder starts
    empty. Refuses to replace a file that is there."""
    if size_gib < 1:
        raise StorageFileError(f"A storage size is at least 1 GiB, not {size_gib}.")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.ftruncate(fd, size_gib * GIB)
    finally:
        os.close(fd)
    try:
        _run(
            "mkfs.ext4",
            "-q",
            "-F",
            "-m",
            "0",
            "-L",
            "workbench",
            "-E",
            f"root_owner={owner},lazy_itable_init=1,lazy_journal_init=1",
            str(path),
        )
        _remove_lost_found(path)
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def _remove_lost_found(path: Path) -> None:
    """Take out the empty lost+found that mkfs and e2fsck make (root's, in the user's folder)."""
    listing = _run("debugfs", "-R", "ls -p /", str(path))
    if "/lost+found/" in listing:
        _run("debugfs", "-w", "-R", "rmdir lost+found", str(path))


def grow_storage_file(path: Path, size_gib: int) -> None:
    """Enlarge an unmounted storage file and its file system to size_gib GiB (never shrinks)."""
    current = path.stat().st_size
    wanted = size_gib * GIB
    if wanted < current:
        raise StorageFileError(
            f"Storage is never shrunk: it is {current / GIB:g} GiB, {size_gib} GiB was asked."
        )
    if wanted == current:
        return
    # resize2fs wants a file system checked since it was last mounted (exit code 1: it
    # corrected something, such as the lost+found it adds back)
    _run("e2fsck", "-f", "-p", str(path), ok=(0, 1))
    with open(path, "r+b") as f:
        f.truncate(wanted)
    _run("resize2fs", str(path))
    _remove_lost_found(path)


def read_usage(path: Path) -> tuple[int, int, int]:
    """(total, used, available) bytes of the ext4 file system in an unmounted storage file,
    from its superblock (a mounted one's counts are as of its last commit)."""
    with open(path, "rb") as f:
        f.seek(SUPERBLOCK_OFFSET)
        block = f.read(1024)
    if len(block) < 1024:
        raise StorageFileError(f"{path} holds no ext4 file system.")
    (magic,) = struct.unpack_from("<H", block, 56)
    if magic != EXT4_MAGIC:
        raise StorageFileError(f"{path} holds no ext4 file system.")
    blocks_lo, _reserved_lo, free_lo = struct.unpack_from("<III", block, 4)
    (log_block_size,) = struct.unpack_from("<I", block, 24)
    (incompat,) = struct.unpack_from("<I", block, 96)
    blocks, free = blocks_lo, free_lo
    if incompat & 0x80:  # 64bit: the high halves of the counts
        blocks_hi, _reserved_hi, free_hi = struct.unpack_from("<III", block, 0x150)
        blocks |= blocks_hi << 32
        free |= free_hi << 32
    size = 1024 << log_block_size
    return blocks * size, (blocks - free) * size, free * size


def mounted_usage(mountpoint: str) -> tuple[int, int, int]:
    """(total, used, available) bytes of a mounted file system, as `df` counts them (ext4
    keeps a little of the free space back: writes fail when available is 0)."""
    st = os.statvfs(mountpoint)
    total = st.f_blocks * st.f_frsize
    return total, total - st.f_bfree * st.f_frsize, st.f_bavail * st.f_frsize


def fixed_size_support(enabled: bool, engine_kind: str, engine_url: str) -> tuple[bool, str]:
    """(whether new instances get storage of a fixed size, and if not, why) on the
    Docker-API backend: Podman on this machine mounts a file system from a file; Docker's
    local volume driver cannot (it mounts without a loop device)."""
    if not enabled:
        return False, (
            "Storage sizes are recorded only on this platform (storage_fixed_size = false): "
            "an instance's files share the host's disk."
        )
    if engine_kind != "podman":
        return False, (
            "Docker's local volumes cannot be limited in size: the size is recorded only and "
            "an instance's files share the host's disk (Podman enforces it)."
        )
    if not engine_url.startswith("unix://"):
        return False, (
            f"The engine at {engine_url} is on another machine: storage files can be made "
            "only beside a local Podman; the size is recorded only."
        )
    missing = missing_tools()
    if missing:
        return False, (
            f"{', '.join(missing)} missing on this machine (install e2fsprogs): the size is "
            "recorded only."
        )
    return True, ""
