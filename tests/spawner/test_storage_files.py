"""Storage files: a real ext4 file system in a sparse file, its use read, grown, never shrunk."""

from __future__ import annotations

import subprocess

import pytest

from spawner.storage_files import (
    GIB,
    StorageFileError,
    fixed_size_support,
    grow_storage_file,
    make_storage_file,
    read_usage,
    storage_file,
)


def listing(path) -> str:
    """The root folder of the file system in the file, as debugfs lists it (uid, gid, names)."""
    return subprocess.run(
        ["debugfs", "-R", "ls -p /", str(path)], capture_output=True, text=True, check=True
    ).stdout


def test_a_new_storage_file_is_sparse_sized_and_owned_by_the_instance_user(tmp_path):
    path = storage_file(tmp_path / "storage", "wb-alice--nb1-work")
    make_storage_file(path, 2, owner="1000:100")
    assert path.stat().st_size == 2 * GIB
    # sparse: it takes a few MiB of the host's disk, not 2 GiB
    assert path.stat().st_blocks * 512 < 64 * 1024**2
    total, used, available = read_usage(path)
    assert total == 2 * GIB and 0 < used < 0.1 * GIB and used + available == total
    root = listing(path)
    # the root folder is the images' user's, and empty: no lost+found in the user's folder
    assert "/2/040755/1000/100/.//" in root
    assert "lost+found" not in root
    # the folder holding the files is the platform's only
    assert oct(path.parent.stat().st_mode & 0o777) == "0o700"


def test_grow_keeps_files_and_never_shrinks(tmp_path):
    path = tmp_path / "v.ext4"
    make_storage_file(path, 1)
    subprocess.run(
        ["debugfs", "-w", "-R", "mkdir kept", str(path)], capture_output=True, check=True
    )
    grow_storage_file(path, 3)
    total, _, _ = read_usage(path)
    assert total == 3 * GIB and path.stat().st_size == 3 * GIB
    root = listing(path)
    assert "/kept/" in root and "lost+found" not in root
    with pytest.raises(StorageFileError, match="never shrunk: it is 3 GiB, 2 GiB was asked"):
        grow_storage_file(path, 2)
    assert read_usage(path)[0] == 3 * GIB


def test_refusals(tmp_path):
    path = tmp_path / "v.ext4"
    with pytest.raises(StorageFileError, match="at least 1 GiB"):
        make_storage_file(path, 0)
    make_storage_file(path, 1)
    with pytest.raises(FileExistsError):
        make_storage_file(path, 1)  # never replaces a user's storage
    with pytest.raises(ValueError, match="not a volume name"):
        storage_file(tmp_path, "../etc/passwd")
    other = tmp_path / "not-ext4"
    other.write_bytes(b"\0" * 4096)
    with pytest.raises(StorageFileError, match="holds no ext4 file system"):
        read_usage(other)


def test_where_sizes_can_be_enforced():
    assert fixed_size_support(True, "podman", "unix:///run/podman.sock") == (True, "")
    enforced, why = fixed_size_support(True, "docker", "unix:///var/run/docker.sock")
    assert not enforced and "Docker's local volumes cannot be limited" in why
    enforced, why = fixed_size_support(True, "podman", "tcp://10.0.0.5:2375")
    assert not enforced and "on another machine" in why
    enforced, why = fixed_size_support(False, "podman", "unix:///run/podman.sock")
    assert not enforced and "storage_fixed_size = false" in why
