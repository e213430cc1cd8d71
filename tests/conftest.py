"""Fixtures: the container engine, the base image, and a real hub for integration tests;
`--order` runs the tests reversed or shuffled."""

from __future__ import annotations

import fcntl
import itertools
import random
import subprocess

import pytest
import yaml

from hub.settings import load_settings
from images.catalog import DEFAULT_CATALOG
from spawner.engine import podman_env
from tests.platform import REPO, running_hub


def pytest_addoption(parser):
    parser.addoption(
        "--order",
        default="",
        help="run the tests 'reversed', or shuffled: 'random' (a new seed, shown in the "
        "header) or 'random:SEED' (that order again). Modules stay whole, and so do classes "
        "in them: only their order and the order of the tests in them change.",
    )


def pytest_configure(config):
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None and "order" in workerinput:
        # a test process of pytest-xdist: the seed the controller picked, so that every
        # process collects the same order
        config.option.order = workerinput["order"]
    order = config.getoption("order")
    if order.startswith("random") and not order.partition(":")[2]:
        config.option.order = f"random:{random.randrange(10**6)}"
    elif order not in ("", "reversed") and not order.startswith("random:"):
        raise pytest.UsageError(f"--order takes reversed, random or random:SEED, not {order!r}")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    """pytest-xdist: hand each test process the order (with its seed) picked here."""
    node.workerinput["order"] = node.config.getoption("order")


def pytest_report_header(config):
    order = config.getoption("order")
    return [f"test order: {order} (again: --order {order})"] if order else []


# the longest modules (minutes each on 2 cores; longest first, as measured). Started together
# they contend for the cores (a full run took 51 min that way, 42 min in random order): the
# default order spreads them among the others, so that test processes seldom run two at once
# and none is left running one of them alone at the end
LONG_MODULES = (
    "tests/features/instances/test_lifecycle.py",
    "tests/features/images/test_save_image.py",
    "tests/images/test_engine_images.py",
    "tests/security/test_images.py",
    "tests/inference_bridge/test_services.py",
    "tests/images/test_hub_image.py",
    "tests/features/instances/test_instances.py",
    "tests/security/test_api_fuzz.py",
    "tests/labextensions/test_experiments_panel.py",
    "tests/ssh_gateway/test_ssh_gateway.py",
    "tests/security/test_instances.py",
    "tests/gallery/test_gallery_api.py",
    "tests/security/test_ssh.py",
    "tests/training_bridge/test_distributed.py",
    "tests/training_bridge/experiments/test_searches.py",
    "tests/security/test_platform.py",
)


def spread_long_modules(items: list) -> list:
    """The tests, with the long modules moved forward and spaced out: one long module, then a
    share of the others (each folder's in turn), then the next long one, and so on."""
    rank = {REPO / path: i for i, path in enumerate(LONG_MODULES)}
    modules: dict = {}  # module path -> its tests, in collection order
    for item in items:
        modules.setdefault(item.path, []).append(item)
    long = sorted((p for p in modules if p in rank), key=rank.__getitem__)
    # the others taken in turn from each test folder, so that like tests (browsers, image
    # builds) do not all run at the same time
    folders: dict = {}
    for path in modules:
        if path not in rank:
            folders.setdefault(path.relative_to(REPO / "tests").parts[0], []).append(path)
    rest = [p for group in itertools.zip_longest(*folders.values()) for p in group if p]
    gap = len(rest) // (len(long) + 1) if long else 0
    arranged = []
    for i, path in enumerate(long):
        arranged += [path, *rest[i * gap : (i + 1) * gap]]
    arranged += rest[len(long) * gap :]
    return [item for path in arranged for item in modules[path]]


def pytest_collection_modifyitems(config, items):
    order = config.getoption("order")
    if not order:
        items[:] = spread_long_modules(items)
        return
    groups: dict[tuple, list] = {}  # (module, class) -> its tests, in collection order
    for item in items:
        groups.setdefault((item.path, getattr(item.cls, "__qualname__", "")), []).append(item)
    modules: dict = {}
    for (path, _), tests in groups.items():
        modules.setdefault(path, []).append(tests)
    shuffled = list(modules.values())
    if order == "reversed":
        arrange = list.reverse
    else:
        rng = random.Random(order.partition(":")[2])
        arrange = rng.shuffle
    arrange(shuffled)
    for module in shuffled:
        arrange(module)
        for tests in module:
            arrange(tests)
    items[:] = [item for module in shuffled for tests in module for item in tests]


@pytest.fixture(scope="session")
def engine(tmp_path_factory):
    """The local container engine (Podman's service is started if needed, by one test
    process: the others wait for it and use it)."""
    settings, _ = load_settings(
        REPO / "workbench.toml" if (REPO / "workbench.toml").exists() else None
    )
    lock = REPO / ".run" / "engine.lock"
    lock.parent.mkdir(exist_ok=True)
    with open(lock, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        return settings.engine()


@pytest.fixture(scope="session")
def base_image(engine):
    """The default image, built if missing (make test builds it first)."""
    from images.build import ImageBuilder
    from images.catalog import load_catalog

    catalog = load_catalog()
    builder = ImageBuilder(
        catalog,
        cli=engine.cli,
        engine_url=engine.url,
        cache_dir=REPO / ".run" / "cache",
        env=podman_env(),
    )
    builder.build(["python"])
    return catalog.get("python")


BROKEN_REF = "localhost/ai-workbench-test/broken:python_3.11-cpu-py_3.11-debian_12-x86_64"
MISSING_REF = "localhost/ai-workbench-test/missing:python_3.11-cpu-py_3.11-debian_12-x86_64"


@pytest.fixture(scope="session")
def test_catalog(tmp_path_factory, engine, base_image):
    """The shipped catalog plus "broken" (an image that exits at once) and "missing" (unbuilt)."""
    root = tmp_path_factory.mktemp("catalog")
    (root / "Dockerfile").write_text(
        f'FROM {base_image.ref}\nCMD ["sh", "-c", "echo cannot start >&2; exit 3"]\n'
    )
    env = podman_env()
    subprocess.run(
        [engine.cli, "build", "-q", "-t", BROKEN_REF, str(root)],
        check=True,
        env=env,
        capture_output=True,
    )
    data = yaml.safe_load(DEFAULT_CATALOG.read_text())
    shipped = data["images"][0]
    for name, ref in (("broken", BROKEN_REF), ("missing", MISSING_REF)):
        repository, tag = ref.rsplit(":", 1)
        data["images"].append(
            {
                **shipped,
                "name": name,
                "repository": repository,
                "tag": tag,
                "description": f"test image: {name}",
            }
        )
    path = root / "catalog.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="session")
def hub(tmp_path_factory, engine, base_image, test_catalog):
    """A real hub with the platform API, spawning real containers; torn down after."""
    with running_hub(
        tmp_path_factory.mktemp("hub"), engine.url, "session", catalog=test_catalog
    ) as h:
        yield h


@pytest.fixture
def labelled_containers(engine, base_image):
    """start(name, user, instance): a running container of the base image named and
    labelled like an instance (its address returned); removed after."""
    import docker

    client = docker.APIClient(base_url=engine.url, timeout=60)
    made = []

    def start(name: str, user: str, instance: str) -> str:
        container = client.create_container(
            base_image.ref,
            command=["sleep", "300"],
            name=name,
            labels={"ai-workbench.user": user, "ai-workbench.instance": instance},
        )
        made.append(container["Id"])
        client.start(container["Id"])
        networks = client.inspect_container(container["Id"])["NetworkSettings"]["Networks"]
        return next(n["IPAddress"] for n in networks.values() if n.get("IPAddress"))

    yield start
    for container in made:
        client.remove_container(container, force=True)
