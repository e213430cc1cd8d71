"""Storage of a fixed size on Podman: seen inside the instance, full at its size, warned of
from 90 %, grown while stopped (never shrunk, within the quota), removed with the instance."""

from __future__ import annotations

import pytest
from workbench import WorkbenchError

from tests.platform import run_code

pytestmark = pytest.mark.integration

GIB = 1024**3

FILL = """
import errno, os
st = os.statvfs('.')
print('total', st.f_blocks * st.f_frsize)
written = 0
try:
    with open('big.bin', 'wb') as f:
        chunk = b'x' * (16 * 1024 * 1024)
        while written < 2 * 1024**3:
            f.write(chunk)
            f.flush()
            written += len(chunk)
except OSError as e:
    print('refused', errno.errorcode[e.errno])
print('written', written)
"""


@pytest.fixture(scope="module")
def sol(hub):
    return hub.add_user("storage-sol")


@pytest.fixture(scope="module")
def limits(hub, sol):
    admin = hub.client()
    yield lambda **values: admin.api("PUT", "quotas/users/storage-sol", {"limits": values})
    admin.api("PUT", "quotas/users/storage-sol", {"limits": {}})


def field(out: dict, name: str) -> int:
    """A number the FILL code printed, or its refusal."""
    for line in out["stdout"].splitlines():
        key, _, value = line.partition(" ")
        if key == name:
            return int(value) if value.isdigit() else value
    raise AssertionError(out)


def test_storage_is_held_to_its_size_warned_of_and_grown(hub, sol, limits):
    model = sol.create_instance("small", image="python", flavor="cpu.tiny", storage_gib=1)
    storage = sol.instance("small")["storage"]
    assert storage["enforced"] is True and storage["size_gib"] == 1
    assert "No space left on device" in storage["note"]
    assert 0.9 * GIB < storage["total_bytes"] <= GIB and storage["warning"] is None

    # inside, the instance sees its own size, and writing past it is refused
    out = run_code(sol, model["url"], FILL)
    assert out["error"] is None, out
    assert 0.9 * GIB < field(out, "total") <= GIB
    assert field(out, "refused") == "ENOSPC"
    assert 0.85 * GIB < field(out, "written") < GIB

    # the API says it is full and what to do
    storage = sol.instance("small")["storage"]
    assert storage["used_bytes"] > 0.95 * storage["total_bytes"]
    assert storage["warning"].startswith("Storage full")
    assert "workbench instances update small --storage N" in storage["warning"]

    # only a stopped instance grows; never shrinks; not past the quota
    with pytest.raises(WorkbenchError) as e:
        sol.update_instance("small", storage_gib=2)
    assert e.value.status == 409 and "stop it first" in e.value.message
    run_code(sol, model["url"], "import os; os.truncate('big.bin', 900 * 1024**2)")
    sol.stop_instance("small")
    with pytest.raises(WorkbenchError) as e:
        sol.update_instance("small", storage_gib=0)
    assert e.value.status == 400 and "whole number of GiB" in e.value.message
    limits(storage_gib=2)
    with pytest.raises(WorkbenchError) as e:
        sol.update_instance("small", storage_gib=3)
    assert e.value.status == 403 and "storage" in e.value.message
    assert sol.instance("small")["storage_gib"] == 1
    limits()

    grown = sol.update_instance("small", storage_gib=3)
    assert grown["storage_gib"] == 3 and grown["state"] == "stopped"
    # 900 MiB of 3 GiB: no warning any more, and the file is still there
    storage = sol.instance("small")["storage"]
    assert 2.9 * GIB < storage["total_bytes"] <= 3 * GIB and storage["warning"] is None
    with pytest.raises(WorkbenchError) as e:
        sol.update_instance("small", storage_gib=2)
    assert e.value.status == 400 and "never shrunk" in e.value.message

    started = sol.start_instance("small")
    out = run_code(
        sol,
        started["url"],
        "import os; st = os.statvfs('.'); print(st.f_blocks * st.f_frsize, "
        "os.path.getsize('big.bin'))",
    )
    total, size = map(int, out["stdout"].split())
    assert 2.9 * GIB < total <= 3 * GIB and size == 900 * 1024**2


def test_the_storage_file_goes_with_its_instance(hub, sol):
    sol.create_instance("gone", image="python", flavor="cpu.tiny", storage_gib=1)
    files = list((hub.root / "data" / "storage").glob(f"{hub.prefix}-*gone*"))
    assert len(files) == 1 and files[0].stat().st_size == GIB
    sol.stop_instance("gone")
    sol.delete_instance("gone")
    assert not files[0].exists()
