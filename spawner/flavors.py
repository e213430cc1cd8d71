"""Flavors: the named resource sizes (vCPU, memory, GPU) an instance runs with."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from images.catalog import load_yaml

HERE = Path(__file__).parent
DEFAULT_FLAVORS = HERE / "flavors.yaml"

_UNITS = {
    "": 1,
    "k": 1000,
    "m": 1000**2,
    "g": 1000**3,
    "t": 1000**4,
    "ki": 1024,
    "mi": 1024**2,
    "gi": 1024**3,
    "ti": 1024**4,
}
_QUANTITY_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgt]i?)?b?\s*$", re.IGNORECASE)
FLAVOR_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]{0,62}$")


class FlavorError(ValueError):
    """A flavor definition is malformed."""


class UnknownFlavor(LookupError):
    """No flavor of that name exists."""

    def __init__(self, name: str, known: list[str]):
        self.name = name
        self.known = known
        super().__init__(f"Unknown flavor {name!r}. Known flavors: {', '.join(known) or 'none'}.")


def parse_bytes(value: str | int) -> int:
    """Bytes from a quantity such as 512Mi, 2Gi or 1G."""
    if isinstance(value, int):
        return value
    match = _QUANTITY_RE.match(str(value))
    if not match:
        raise FlavorError(f"{value!r} is not a memory size (examples: 512Mi, 2Gi)")
    number, unit = match.groups()
    return int(float(number) * _UNITS[(unit or "").lower()])


def format_bytes(n: int) -> str:
    """A short human form of a byte count (2 GiB, 512 MiB)."""
    for unit, size in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= size:
            value = n / size
            return f"{value:g} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n} B"


@dataclass(frozen=True)
class Flavor:
    """A resource size: vCPUs, memory bytes and GPUs."""

    name: str
    description: str
    cpu: float
    memory: int
    gpu: int = 0
    gpu_type: str = ""

    def to_dict(self) -> dict:
        """The JSON model used by the API."""
        return {
            "name": self.name,
            "description": self.description,
            "cpu": self.cpu,
            "memory": self.memory,
            "memory_display": format_bytes(self.memory),
            "gpu": self.gpu,
            "gpu_type": self.gpu_type,
        }


def _parse_flavor(raw: dict) -> Flavor:
    name = str(raw.get("name", ""))
    if not FLAVOR_NAME_RE.match(name):
        raise FlavorError(f"flavor name {name!r} must be lower-case letters, digits, '.' or '-'")
    try:
        cpu = float(raw["cpu"])
        memory = parse_bytes(raw["memory"])
    except KeyError as e:
        raise FlavorError(f"flavor {name!r} lacks {e.args[0]!r}") from None
    gpu = int(raw.get("gpu", 0))
    if cpu <= 0 or memory <= 0 or gpu < 0:
        raise FlavorError(f"flavor {name!r}: cpu and memory must be positive, gpu not negative")
    if memory < 128 * 1024**2:
        raise FlavorError(f"flavor {name!r}: memory below 128Mi cannot run JupyterLab")
    return Flavor(
        name=name,
        description=str(raw.get("description", "")),
        cpu=cpu,
        memory=memory,
        gpu=gpu,
        gpu_type=str(raw.get("gpu_type", "")),
    )


def load_flavors(path: str | Path | None = None) -> dict[str, Flavor]:
    """The flavors of a flavors file (the shipped one by default), by name, in file order."""
    path = Path(path) if path else DEFAULT_FLAVORS
    try:
        data = load_yaml(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise FlavorError(f"cannot read flavors file {path}: {e}") from e
    flavors: dict[str, Flavor] = {}
    for raw in (data or {}).get("flavors", []):
        flavor = _parse_flavor(raw)
        if flavor.name in flavors:
            raise FlavorError(f"flavor {flavor.name!r} is defined twice in {path}")
        flavors[flavor.name] = flavor
    if not flavors:
        raise FlavorError(f"{path} defines no flavors")
    return flavors


def get_flavor(flavors: dict[str, Flavor], name: str) -> Flavor:
    """The flavor of that name; raises UnknownFlavor."""
    try:
        return flavors[name]
    except KeyError:
        raise UnknownFlavor(name, list(flavors)) from None
