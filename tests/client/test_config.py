"""The client's configuration from arguments and the environment, its name patterns and times:
what it resolves without a platform to call."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from workbench import AsyncWorkbenchClient, WorkbenchClient
from workbench.config import resolve
from workbench.names import (
    image_name_problem,
    instance_name_problem,
    split_saved_name,
    tag_problem,
)
from workbench.times import isoformat, parse_time, utcnow

from images.saved import InvalidImage, parse_saved_name, validate_image_name, validate_tag
from spawner.options import InvalidOptions, validate_instance_name

INSTANCE = {
    "WORKBENCH_API_URL": "http://host.containers.internal:8090/services/workbench/api",
    "JUPYTERHUB_API_URL": "http://host.containers.internal:8081/hub/api",
    "JUPYTERHUB_API_TOKEN": "instance-token",
    "JUPYTERHUB_USER": "alice",
}


def test_outside_an_instance_the_url_and_token_variables():
    config = resolve(env={"WORKBENCH_URL": "http://wb.example:8000/", "WORKBENCH_TOKEN": "t1"})
    assert config.url == "http://wb.example:8000"
    assert config.api_url == "http://wb.example:8000/services/workbench/api"
    assert config.hub_api_url == "http://wb.example:8000/hub/api"
    assert (config.token, config.user) == ("t1", "")


def test_inside_an_instance_what_the_spawner_sets():
    config = resolve(env=INSTANCE)
    assert config.api_url == INSTANCE["WORKBENCH_API_URL"]
    assert config.hub_api_url == INSTANCE["JUPYTERHUB_API_URL"]
    assert (config.token, config.user) == ("instance-token", "alice")
    assert config.url == "http://host.containers.internal:8090"
    # the platform API's URL derives from the hub's where the spawner does not set it
    env = {k: v for k, v in INSTANCE.items() if k != "WORKBENCH_API_URL"}
    assert resolve(env=env).api_url == "http://host.containers.internal:8081/services/workbench/api"


def test_arguments_win_over_the_environment():
    env = {**INSTANCE, "WORKBENCH_URL": "http://elsewhere:8000", "WORKBENCH_TOKEN": "t2"}
    config = resolve("http://127.0.0.1:9000", "mine", env=env)
    assert config.api_url == "http://127.0.0.1:9000/services/workbench/api"
    assert (config.token, config.user) == ("mine", "")
    # $WORKBENCH_URL means outside: the instance's variables are not mixed in
    assert resolve(env=env).api_url == "http://elsewhere:8000/services/workbench/api"
    assert resolve(env=env).token == "t2"
    # an explicit empty value stays empty (the panel reports it), None looks further
    assert resolve(api_url="", token="", env=INSTANCE).api_url == ""
    assert resolve(api_url="", token="", env=INSTANCE).token == ""


def test_nothing_set_means_the_local_platform():
    config = resolve(env={})
    assert config.url == "http://127.0.0.1:8000"
    assert config.api_url == "http://127.0.0.1:8000/services/workbench/api"
    assert config.token == ""


def test_clients_read_the_environment(monkeypatch):
    for name, value in INSTANCE.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("WORKBENCH_URL", raising=False)
    monkeypatch.delenv("WORKBENCH_TOKEN", raising=False)
    client = WorkbenchClient()
    assert (client.api_url, client.token, client.user) == (
        INSTANCE["WORKBENCH_API_URL"],
        "instance-token",
        "alice",
    )
    assert AsyncWorkbenchClient().hub_api_url == INSTANCE["JUPYTERHUB_API_URL"]
    # the token can change (a sign-in), the sync client's attributes are the async one's
    client.token = "other"
    assert client.aio.token == "other"


@pytest.mark.parametrize(
    "name, ok",
    [("bert-finetune", True), ("a", True), ("Bad", False), ("-x", False), ("x" * 33, False)],
)
def test_one_instance_name_rule(name, ok):
    assert (instance_name_problem(name) is None) is ok
    if ok:
        assert validate_instance_name(name) == name
    else:
        with pytest.raises(InvalidOptions) as e:
            validate_instance_name(name)
        assert str(e.value) == instance_name_problem(name)


@pytest.mark.parametrize(
    "name, tag, ok",
    [("bert-env", "v1", True), ("bert.env_2", "v1.0-rc", True), ("Bad Name", "v1", False)]
    + [("bert-env", "-x", False), ("x" * 65, "v1", False), ("ok", "t" * 129, False)],
)
def test_one_saved_image_name_and_tag_rule(name, tag, ok):
    assert (image_name_problem(name) is None and tag_problem(tag) is None) is ok
    if not ok:
        with pytest.raises(InvalidImage):
            validate_image_name(name)
            validate_tag(tag)


def test_saved_names():
    assert split_saved_name("saved:alice/bert-env:v1") == ("alice", "bert-env", "v1")
    assert parse_saved_name("saved:a@b.c/x:y") == ("a@b.c", "x", "y")
    for bad in ("python", "saved:bert-env:v1", "saved:alice/bert-env", None):
        assert split_saved_name(bad) is None
    with pytest.raises(InvalidImage):
        parse_saved_name("saved:alice/bert-env")


def test_times_are_utc():
    now = utcnow()
    assert now.tzinfo is None
    assert abs((datetime.now(UTC).replace(tzinfo=None) - now).total_seconds()) < 5
    assert isoformat(datetime(2026, 1, 2, 3, 4, 5)) == "2026-01-02T03:04:05Z"
    assert parse_time("2026-01-02T03:04:05Z") == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parse_time(None) is None and isoformat(None) is None
