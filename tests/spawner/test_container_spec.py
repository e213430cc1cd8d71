"""The Docker spawner's container spec: flavor limits, GPUs, storage, user."""

from images.catalog import load_catalog
from spawner.container import make_container_spec, make_device_requests
from spawner.flavors import load_flavors
from spawner.options import InstanceSpec


def _spec(flavor_name):
    flavors = load_flavors()
    image = load_catalog().get("python")
    spec = InstanceSpec(image="python", flavor=flavor_name, storage_gib=5)
    return (
        make_container_spec(
            owner="alice",
            instance="nb1",
            object_name="workbench-alice--nb1",
            spec=spec,
            image=image,
            flavor=flavors[flavor_name],
            work_dir="/home/jovyan/work",
            run_as="1000:100",
        ),
        flavors[flavor_name],
        image,
    )


def test_cpu_flavor_limits_and_storage():
    cs, flavor, image = _spec("cpu.small")
    assert cs["image"] == image.ref
    assert cs["mem_limit"] == 2 * 1024**3 and cs["cpu_limit"] == 1
    assert cs["extra_host_config"]["memswap_limit"] == cs["mem_limit"]
    assert "device_requests" not in cs["extra_host_config"]
    assert cs["volumes"] == {
        "workbench-alice--nb1-work": {"bind": "/home/jovyan/work", "mode": "rw"}
    }
    create = cs["extra_create_kwargs"]
    assert create["user"] == "1000:100" and create["working_dir"] == "/home/jovyan/work"
    assert create["labels"]["ai-workbench.instance"] == "nb1"
    assert create["labels"]["ai-workbench.flavor"] == "cpu.small"


def test_gpu_flavor_requests_devices():
    cs, flavor, _ = _spec("gpu.t4")
    assert cs["extra_host_config"]["device_requests"] == [
        {"driver": "nvidia", "count": 1, "capabilities": [["gpu"]]}
    ]
    assert make_device_requests(load_flavors()["cpu.tiny"]) == []
