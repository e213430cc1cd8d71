"""Flavors: sizes parse, the shipped file is sound, bad definitions are refused."""

import pytest

from spawner.flavors import FlavorError, format_bytes, load_flavors, parse_bytes


@pytest.mark.parametrize(
    "text,expected",
    [("512Mi", 512 * 1024**2), ("2Gi", 2 * 1024**3), ("1G", 10**9), ("1.5Gi", 1610612736), (7, 7)],
)
def test_parse_bytes(text, expected):
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("text", ["lots", "-1Gi", "2Pi", ""])
def test_parse_bytes_refuses_garbage(text):
    with pytest.raises(FlavorError):
        parse_bytes(text)


def test_format_bytes():
    assert format_bytes(2 * 1024**3) == "2 GiB"
    assert format_bytes(1536 * 1024**2) == "1.5 GiB"
    assert format_bytes(512 * 1024**2) == "512 MiB"


def test_shipped_flavors():
    flavors = load_flavors()
    assert flavors["cpu.small"].cpu == 1 and flavors["cpu.small"].memory == 2 * 1024**3
    gpus = [f for f in flavors.values() if f.gpu]
    assert gpus and all(f.gpu_type for f in gpus)
    assert all(f.description for f in flavors.values())


@pytest.mark.parametrize(
    "body,message",
    [
        ("flavors:\n  - {name: a, cpu: 1}\n", "lacks 'memory'"),
        ("flavors:\n  - {name: A B, cpu: 1, memory: 1Gi}\n", "lower-case"),
        ("flavors:\n  - {name: a, cpu: 0, memory: 1Gi}\n", "positive"),
        ("flavors:\n  - {name: a, cpu: 1, memory: 64Mi}\n", "128Mi"),
        (
            "flavors:\n  - {name: a, cpu: 1, memory: 1Gi}\n  - {name: a, cpu: 2, memory: 1Gi}\n",
            "twice",
        ),
        ("flavors: []\n", "no flavors"),
        ("flavors: [\n", "cannot read"),
    ],
)
def test_bad_flavor_files(tmp_path, body, message):
    path = tmp_path / "flavors.yaml"
    path.write_text(body)
    with pytest.raises(FlavorError, match=message):
        load_flavors(path)
