"""The image catalog: entries, tags, lookups and build order."""

import pytest
import yaml

from images.catalog import DEFAULT_CATALOG, TAG_RE, CatalogError, UnknownImage, load_catalog


def test_shipped_catalog_entries_are_complete():
    catalog = load_catalog()
    assert "python" in catalog.names
    for entry in catalog:
        assert entry.ref.startswith("localhost/")
        assert TAG_RE.match(entry.tag)
        assert entry.environments and entry.description
        model = entry.to_dict()
        assert model["ref"] == entry.ref and model["environments"]


def test_registry_prefix_is_applied():
    entry = load_catalog(registry="registry.example.com").get("python")
    assert entry.ref.startswith("registry.example.com/ai-workbench/python:")


def test_lookup_by_name_or_ref_and_unknown():
    catalog = load_catalog()
    entry = catalog.get("python")
    assert catalog.get(entry.ref) is entry
    with pytest.raises(UnknownImage, match="Known images: .*python"):
        catalog.get("pytorch-nightly")


def _write(tmp_path, entries):
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump({"images": entries}))
    return path


def _entry(**kw):
    base = yaml.safe_load(DEFAULT_CATALOG.read_text())["images"][0]
    return {**base, **kw}


def test_build_order_puts_bases_first(tmp_path):
    path = _write(
        tmp_path,
        [
            _entry(),
            _entry(name="child", base="python", tag="torch_2.0.0-cpu-py_3.11-debian_12-x86_64"),
        ],
    )
    catalog = load_catalog(path)
    assert [e.name for e in catalog.build_order(["child"])] == ["python", "child"]
    assert [e.name for e in catalog.build_order()] == ["python", "child"]


@pytest.mark.parametrize(
    "entries,message",
    [
        ([_entry(tag="latest")], "does not follow"),
        ([_entry(), _entry()], "duplicate"),
        ([_entry(environments=[])], "no environments"),
        ([_entry(description="")], "lacks description"),
    ],
)
def test_bad_catalogs(tmp_path, entries, message):
    with pytest.raises(CatalogError, match=message):
        load_catalog(_write(tmp_path, entries))


def test_unknown_base_is_refused(tmp_path):
    with pytest.raises(UnknownImage):
        load_catalog(_write(tmp_path, [_entry(base="nope")]))


def test_engine_images_share_one_dockerfile_with_their_environment_as_arguments():
    from images.build import HERE, ImageBuilder

    catalog = load_catalog()
    for name, display in (("pytorch", "PyTorch 2.13"), ("mindspore", "MindSpore 2.10")):
        entry = catalog.get(name)
        assert (HERE / entry.dockerfile / "Dockerfile").resolve() == HERE / "engine" / "Dockerfile"
        assert (HERE / entry.dockerfile / f"requirements-{name}.txt").is_file()
        assert ImageBuilder.environment_args(entry) == [
            "--build-arg",
            f"ENV_NAME={name}",
            "--build-arg",
            f"ENV_DISPLAY_NAME={display}",
            "--build-arg",
            f"ENV_ENGINE={name}",
        ]
    assert ImageBuilder.environment_args(catalog.get("python")) == []
