"""Relaxed wheels (images/overrides.py): one declared dependency replaced, pip still takes them."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
import zipfile

import pytest

from images.overrides import read_overrides, relax_wheel

METADATA = """Metadata-Version: 2.1
Name: demo
Version: 1.0
Requires-Dist: protobuf<7.0.0,>=6.33.5
Requires-Dist: numpy>=1.26
Requires-Dist: grpcio>=1.7; extra == "grpc"

A demo.
"""


def make_wheel(folder):
    wheel = folder / "demo-1.0-py3-none-any.whl"
    files = {
        "demo/__init__.py": "VALUE = 1\n",
        "demo-1.0.dist-info/METADATA": METADATA,
        "demo-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nRoot-Is-Purelib: true\n",
    }
    with zipfile.ZipFile(wheel, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
        z.writestr("demo-1.0.dist-info/RECORD", "".join(f"{n},,\n" for n in files))
    return wheel


def test_the_relaxed_wheel_has_the_new_requirement_and_a_local_version(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "out").mkdir()
    relaxed = relax_wheel(make_wheel(tmp_path / "src"), ["protobuf>=6.33.5,<8"], tmp_path / "out")
    assert relaxed.name == "demo-1.0+relaxed-py3-none-any.whl"
    with zipfile.ZipFile(relaxed) as z:
        names = z.namelist()
        metadata = z.read("demo-1.0+relaxed.dist-info/METADATA").decode()
        record = z.read("demo-1.0+relaxed.dist-info/RECORD").decode().splitlines()
        assert "demo-1.0.dist-info/METADATA" not in names
        assert "Version: 1.0+relaxed" in metadata
        assert "Requires-Dist: protobuf>=6.33.5,<8" in metadata
        assert "protobuf<7" not in metadata and "Requires-Dist: numpy>=1.26" in metadata
        for line in record:  # every file but RECORD with its hash and size
            path, digest, size = line.rsplit(",", 2)
            if path.endswith("RECORD"):
                continue
            data = z.read(path)
            expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            assert digest == "sha256=" + expected.decode() and int(size) == len(data)
    # pip takes it for `demo==1.0` over the unchanged wheel beside it
    (tmp_path / "out" / "demo-1.0-py3-none-any.whl").write_bytes(
        (tmp_path / "src" / "demo-1.0-py3-none-any.whl").read_bytes()
    )
    got = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-index", "--no-deps", "--find-links",
         str(tmp_path / "out"), "--dest", str(tmp_path / "got"), "demo==1.0"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert got.returncode == 0, got.stderr
    assert [p.name for p in (tmp_path / "got").iterdir()] == [relaxed.name]


def test_a_dependency_the_wheel_does_not_declare_is_refused(tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(ValueError, match="declares no dependency on pandas"):
        relax_wheel(make_wheel(tmp_path), ["pandas<3"], tmp_path / "out")


def test_overrides_files(tmp_path):
    path = tmp_path / "wheel-overrides.txt"
    path.write_text("# why\n\nkserve==0.21.0 protobuf>=6.33.5,<8  # a comment\n")
    assert read_overrides(path) == [("kserve==0.21.0", "protobuf>=6.33.5,<8")]
    path.write_text("kserve==0.21.0\n")
    with pytest.raises(ValueError, match="expected '<requirement> <dependency specifier>'"):
        read_overrides(path)
