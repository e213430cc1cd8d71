"""Relaxed wheels: an upstream wheel with one declared dependency replaced, for an environment
that cannot resolve otherwise (an image folder's wheel-overrides.txt names them)."""

from __future__ import annotations

import base64
import hashlib
import re
import zipfile
from pathlib import Path

# in an image's folder: lines of "<requirement> <dependency specifier>", e.g.
#   kserve==0.21.0 protobuf>=6.33.5,<8
# the build fetches the requirement's wheel, replaces its declared dependency on that project
# with the specifier, and gives it the version <version>+relaxed, which still satisfies
# `kserve==0.21.0` (PEP 440 ignores local labels there) and wins over the unchanged wheel
OVERRIDES_FILE = "wheel-overrides.txt"
LABEL = "relaxed"


def read_overrides(path: Path) -> list[tuple[str, str]]:
    """The (requirement, dependency specifier) pairs of an overrides file."""
    pairs = []
    for line in path.read_text().splitlines():
        line = line.partition("#")[0].strip()
        if not line:
            continue
        requirement, _, replacement = line.partition(" ")
        if not replacement.strip():
            raise ValueError(f"{path}: {line!r}: expected '<requirement> <dependency specifier>'")
        pairs.append((requirement, replacement.strip()))
    return pairs


def project(spec: str) -> str:
    """The normalised project name a requirement or Requires-Dist value starts with."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", spec)
    if not match:
        raise ValueError(f"not a requirement: {spec!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def relax_wheel(wheel: Path, replacements: list[str], dest: Path) -> Path:
    """Write into dest a copy of wheel, version <version>+relaxed, whose declared dependency on
    each replacement's project is that replacement (environment markers kept); its path."""
    dist, version, tags = wheel.name[: -len(".whl")].split("-", 2)
    new_version = f"{version}+{LABEL}"
    old_info, new_info = f"{dist}-{version}.dist-info/", f"{dist}-{new_version}.dist-info/"
    by_project = {project(r): r for r in replacements}
    out = dest / f"{dist}-{new_version}-{tags}.whl"
    record = []
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            name = info.filename
            if name.startswith(old_info):
                name = new_info + name[len(old_info) :]
            if name == new_info + "RECORD":
                continue
            data = src.read(info)
            if name == new_info + "METADATA":
                data = _relax_metadata(data.decode(), new_version, by_project, wheel).encode()
            dst.writestr(name, data)
            record.append(f"{name},{_record_hash(data)},{len(data)}")
        record.append(f"{new_info}RECORD,,")
        dst.writestr(new_info + "RECORD", "\n".join(record) + "\n")
    return out


def _relax_metadata(text: str, version: str, by_project: dict[str, str], wheel: Path) -> str:
    found = set()
    lines = []
    for line in text.split("\n"):
        if line.startswith("Version: "):
            line = f"Version: {version}"
        elif line.startswith("Requires-Dist: "):
            value = line[len("Requires-Dist: ") :]
            name = project(value)
            if name in by_project:
                marker = value.partition(";")[2].strip()
                line = f"Requires-Dist: {by_project[name]}" + (f"; {marker}" if marker else "")
                found.add(name)
        lines.append(line)
    missing = set(by_project) - found
    if missing:
        raise ValueError(f"{wheel.name} declares no dependency on {', '.join(sorted(missing))}")
    return "\n".join(lines)
