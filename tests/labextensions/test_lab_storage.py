"""The panel's storage line on a real, small file system: its own size, and a warning when full."""

from __future__ import annotations

import subprocess

import pytest
from workbench_lab.usage import storage_model


@pytest.fixture
def small_disk(tmp_path):
    """A 64 MiB ext4 file system, loop-mounted (as an instance's storage is on Podman)."""
    image, mountpoint = tmp_path / "disk.ext4", tmp_path / "mnt"
    mountpoint.mkdir()
    subprocess.run(["truncate", "-s", "64M", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", str(image)], check=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(mountpoint)], check=True)
    yield mountpoint
    subprocess.run(["umount", str(mountpoint)], check=True)


def test_storage_shows_its_own_size_and_warns_when_full(small_disk):
    model = storage_model(small_disk, "nb1")
    assert 50 * 1024**2 < model["total"] <= 64 * 1024**2
    assert model["warning"] is None and model["percent"] < 90
    with pytest.raises(OSError, match="No space left on device"):
        with open(small_disk / "fill", "wb") as f:
            while True:
                f.write(b"x" * 1024**2)
                f.flush()
    model = storage_model(small_disk, "nb1")
    assert model["percent"] >= 90 and model["free"] < 1024**2
    assert model["warning"].startswith("Storage full: writes fail.")
    assert "`workbench instances update nb1 --storage N`" in model["warning"]
    (small_disk / "fill").unlink()
    base = storage_model(small_disk)["used"]
    with open(small_disk / "fill", "wb") as f:
        f.write(b"x" * (int(0.93 * model["total"]) - base))
    model = storage_model(small_disk, "nb1")
    assert 90 <= model["percent"] < 97
    assert model["warning"].startswith(f"Storage {model['percent']:g}% full.")
