"""Instance options: names, images, flavors and storage are checked with clear messages."""

import pytest

from images.catalog import load_catalog
from spawner.flavors import load_flavors
from spawner.options import (
    InstancePolicy,
    InvalidOptions,
    options_from_form,
    parse_options,
    validate_instance_name,
)


@pytest.fixture
def policy():
    return InstancePolicy(
        catalog=load_catalog(),
        flavors=load_flavors(),
        default_image="python",
        default_flavor="cpu.small",
        storage_min_gib=1,
        storage_max_gib=50,
        storage_default_gib=10,
    )


@pytest.mark.parametrize("name", ["a", "my-notebook", "bert2", "x" * 32, "0day"])
def test_valid_instance_names(name):
    assert validate_instance_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "-lead", "trail-", "Upper", "has space", "dot.ted", "x" * 33, "ünï", None, 7]
)
def test_invalid_instance_names_say_what_is_allowed(name):
    with pytest.raises(InvalidOptions, match="name"):
        validate_instance_name(name)


def test_defaults_fill_missing_options(policy):
    spec = parse_options({}, policy)
    assert (spec.image, spec.flavor, spec.storage_gib, spec.description) == (
        "python",
        "cpu.small",
        10,
        "",
    )


def test_options_round_trip(policy):
    raw = {"image": "python", "flavor": "cpu.tiny", "storage_gib": 20, "description": " demo "}
    spec = parse_options(raw, policy)
    assert spec.to_options() == {
        "image": "python",
        "flavor": "cpu.tiny",
        "storage_gib": 20,
        "description": "demo",
        "ssh": {"enabled": False, "allowlist": []},
        "auto_stop": {"idle_minutes": 60, "max_hours": 0},
        "workspace": "default",
    }
    assert parse_options(spec.to_options(), policy) == spec


@pytest.mark.parametrize("workspace", ["NLP", "a b", "x" * 40, 3])
def test_bad_workspace_names_are_refused(policy, workspace):
    with pytest.raises(InvalidOptions, match="Invalid workspace name"):
        parse_options({"workspace": workspace}, policy)


def test_ssh_settings_are_normalised(policy):
    spec = parse_options(
        {"ssh": {"enabled": True, "allowlist": "10.1.2.3, 192.168.0.0/16 10.1.2.3"}}, policy
    )
    assert spec.ssh == {"enabled": True, "allowlist": ["10.1.2.3/32", "192.168.0.0/16"]}


@pytest.mark.parametrize(
    "ssh, reason",
    [
        ({"enabled": "yes"}, "true or false"),
        ({"allowlist": ["300.1.1.1"]}, "not an IP address or CIDR"),
        ({"allowlist": 7}, "list of addresses"),
        ({"port": 22}, "Unknown SSH setting"),
        ("on", "must be an object"),
    ],
)
def test_bad_ssh_settings_are_refused(policy, ssh, reason):
    with pytest.raises(InvalidOptions, match=reason):
        parse_options({"ssh": ssh}, policy)


@pytest.mark.parametrize(
    "auto_stop, reason",
    [
        ({"idle_minutes": -5}, "out of range"),
        ({"idle_minutes": 10**6}, "out of range"),
        ({"idle_minutes": "soon"}, "must be a number"),
        ({"max_hours": -1}, "out of range"),
        ({"max_hours": 10**4}, "out of range"),
        ({"after": 3}, "Unknown auto-stop setting"),
    ],
)
def test_bad_auto_stop_settings_are_refused(policy, auto_stop, reason):
    with pytest.raises(InvalidOptions, match=reason):
        parse_options({"auto_stop": auto_stop}, policy)


def test_auto_stop_zero_means_never(policy):
    spec = parse_options({"auto_stop": {"idle_minutes": 0, "max_hours": "4"}}, policy)
    assert spec.auto_stop == {"idle_minutes": 0, "max_hours": 4.0}


def test_form_fields_become_nested_options():
    form = {
        "image": ["python"],
        "ssh_enabled": ["on"],
        "ssh_allowlist": ["10.0.0.0/8"],
        "idle_minutes": ["30"],
        "max_hours": [""],
    }
    assert options_from_form(form) == {
        "image": "python",
        "ssh": {"enabled": True, "allowlist": "10.0.0.0/8"},
        "auto_stop": {"idle_minutes": "30"},
    }


def test_unknown_image_lists_known_ones(policy):
    with pytest.raises(InvalidOptions, match=r"Unknown image 'tensorflw'.*python"):
        parse_options({"image": "tensorflw"}, policy)


def test_unknown_flavor_lists_known_ones(policy):
    with pytest.raises(InvalidOptions, match=r"Unknown flavor 'huge'.*cpu.small"):
        parse_options({"flavor": "huge"}, policy)


def test_allowed_flavors_hide_the_rest(policy):
    narrow = InstancePolicy(**{**policy.__dict__, "allowed_flavors": ("cpu.tiny",)})
    assert [f.name for f in narrow.visible_flavors()] == ["cpu.tiny"]
    with pytest.raises(InvalidOptions, match="Unknown flavor 'gpu.t4'"):
        parse_options({"flavor": "gpu.t4", "image": "python"}, narrow)


@pytest.mark.parametrize("size", [0, 51, -3, "big", "1.5"])
def test_storage_out_of_range_or_malformed(policy, size):
    with pytest.raises(InvalidOptions, match="[Ss]torage"):
        parse_options({"storage_gib": size}, policy)


def test_storage_accepts_gib_suffix(policy):
    assert parse_options({"storage_gib": "20Gi"}, policy).storage_gib == 20


def test_unknown_option_keys_are_refused(policy):
    with pytest.raises(InvalidOptions, match="Unknown instance option.*cpu"):
        parse_options({"cpu": 64}, policy)


def test_description_length_is_bounded(policy):
    with pytest.raises(InvalidOptions, match="longer than"):
        parse_options({"description": "x" * 513}, policy)


def test_options_from_form_takes_first_non_empty_values():
    form = {"image": ["python"], "flavor": ["cpu.tiny"], "storage_gib": [" "], "other": ["x"]}
    assert options_from_form(form) == {"image": "python", "flavor": "cpu.tiny"}
