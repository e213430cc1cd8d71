"""The whole platform API, fuzzed from its own OpenAPI description with schemathesis: whatever
an attacker sends, the service never fails (5xx) and every refusal is a JSON message."""

from __future__ import annotations

import os
import re
import time

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from tornado import web
from workbench import WorkbenchError

from hub.service.handlers import OPENAPI_PATH, load_openapi

pytestmark = pytest.mark.integration

PREFIX = "/services/workbench"
# examples per operation and generation mode: bounded so a run takes minutes on 2 cores
EXAMPLES = int(os.environ.get("WORKBENCH_FUZZ_EXAMPLES", "6"))
# operations that start containers (create, start, and a switch of flavor or image) get
# fewer examples: each start is a real container, seconds of the engine's time
FEW = {
    ("POST", "/api/users/{user}/instances"): 3,
    ("POST", "/api/users/{user}/instances/{name}/start"): 2,
    ("PATCH", "/api/users/{user}/instances/{name}"): 4,
}
# path parameters pointing at what exists, so requests get past "no such thing"
FIXED = {"user": "fuzzer", "name": "fz", "workspace": "default"}


def path_parameters(path: str) -> list[str]:
    return re.findall(r"{(\w+)}", path)


def check(operation, response: requests.Response) -> str | None:
    """What is wrong with an answer, or None."""
    if response.status_code >= 500:
        return f"{response.status_code}: {response.text[:300]}"
    if not 400 <= response.status_code < 500:
        return None
    if "pages" in (operation.definition.raw.get("tags") or ()):
        return None  # browser pages answer refusals as HTML pages
    try:
        body = response.json()
    except ValueError:
        return f"{response.status_code} is not JSON: {response.text[:200]!r}"
    if not isinstance(body, dict) or not isinstance(body.get("message"), str):
        return f"{response.status_code} has no message: {body!r}"
    if not body["message"].strip():
        return f"{response.status_code} has an empty message"
    return None


def strategies(operation):
    """Valid and invalid requests, against existing and made-up resources."""
    names = path_parameters(operation.path)
    fixed = {k: v for k, v in FIXED.items() if k in names}
    if operation.method.upper() == "DELETE":
        # deleting the fixture instance would leave every later operation a 404
        fixed.pop("name", None)
        fixed.pop("workspace", None)
    options = [operation.as_strategy(GenerationMode.POSITIVE)]
    if fixed:
        options.append(operation.as_strategy(GenerationMode.POSITIVE, path_parameters=fixed))
    try:
        options.append(operation.as_strategy(GenerationMode.NEGATIVE))
    except Exception:  # noqa: BLE001 - nothing to make invalid (no parameters, no body)
        pass
    return st.one_of(options)


def fuzz(base_url: str, token: str) -> dict[str, str]:
    """{operation: first problem} over every operation of the served description."""
    description = requests.get(f"{base_url}{PREFIX}/api/openapi.json", timeout=30).json()
    schema = schemathesis.openapi.from_dict(description)
    problems: dict[str, str] = {}
    headers = {"Authorization": f"token {token}"}
    for result in schema.get_all_operations():
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"
        examples = FEW.get((operation.method.upper(), operation.path), EXAMPLES)

        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategies(operation))
        def run(case):
            response = case.call(base_url=base_url + PREFIX, headers=headers, timeout=180)
            problem = check(case.operation, response)
            assert problem is None, f"{case.method} {case.formatted_path}: {problem}"

        started = time.monotonic()
        try:
            run()
        except AssertionError as e:
            problems[label] = str(e).splitlines()[0]
        print(f"{label}: {time.monotonic() - started:.1f}s")
    return problems


@pytest.fixture(scope="module")
def fuzzer(hub):
    """A signed-in user with one stopped instance to aim at; their instances are removed
    after."""
    client = hub.add_user("fuzzer")
    client.create_instance("fz", flavor="cpu.tiny", storage_gib=1, start=False)
    admin = hub.client()
    # the fuzzing sets the quotas it reaches (the default workspace's, the fuzzer's): later
    # tests on this hub get them back as they were
    quotas = ["quotas/workspaces/default", "quotas/users/fuzzer"]
    before = {path: admin.api("GET", path)["limits"] for path in quotas}
    yield client
    for path, limits in before.items():
        admin.api("PUT", path, {"limits": limits})
    for instance in admin.instances(user="fuzzer"):
        try:
            if instance["state"] not in ("stopped", "failed", "creating"):
                admin.stop_instance(instance["name"], user="fuzzer")
            admin.delete_instance(instance["name"], user="fuzzer")
        except WorkbenchError:
            pass


def test_every_route_is_described(tmp_path, monkeypatch):
    """Every route the service registers is in the OpenAPI description with each method its
    handler answers, and the description names no route the service lacks: the fuzzing
    below covers the whole API, and clients can rely on the description."""
    from hub.db import Database
    from hub.service.app import make_app
    from hub.settings import load_settings

    monkeypatch.setenv("JUPYTERHUB_API_URL", "http://127.0.0.1:1/hub/api")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "unused")
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", PREFIX + "/")
    config = tmp_path / "workbench.toml"
    config.write_text(f'[workbench]\ndata_dir = "{tmp_path}"\n')
    settings_, _ = load_settings(config)
    app = make_app(settings_, Database(f"sqlite:///{tmp_path}/platform.sqlite"))
    rules = app.wildcard_router.rules
    description = load_openapi(PREFIX + "/")
    assert OPENAPI_PATH.exists()
    samples = {"user": "alice", "name": "nb1", "image": "env", "tag": "v1"}
    samples |= {"workspace": "team", "key_id": "3"}
    samples |= {"owner": "alice", "version": "1", "path": "output/model.pt"}
    samples |= {"key_name": "ci", "rest": "v2/models/mnist/infer"}
    samples |= {"label": "cat", "sample": "7", "task": "team-1", "run": "2"}
    samples |= {"search_id": "4", "tensorboard_id": "5", "asset_id": "3"}

    def handler_of(url: str):
        for rule in rules:
            if rule.matcher.regex.fullmatch(url):
                return rule.target
        return None

    def methods_of(handler) -> set[str]:
        return {
            m
            for m in ("get", "post", "put", "patch", "delete")
            if getattr(handler, m) is not getattr(web.RequestHandler, m)
        }

    described: dict = {}
    for path, item in description["paths"].items():
        url = PREFIX + re.sub(r"{(\w+)}", lambda m: samples[m.group(1)], path)
        handler = handler_of(url)
        assert handler is not None, f"{path} is described but no route serves it"
        methods = {m for m in item if m in ("get", "post", "put", "patch", "delete")}
        assert methods <= methods_of(handler), f"{path}: {handler.__name__} lacks {methods}"
        described.setdefault(handler, set()).update(methods)
    for rule in rules:
        missing = methods_of(rule.target) - described.get(rule.target, set())
        assert not missing, f"{rule.matcher.regex.pattern}: {sorted(missing)} not described"


def test_the_description_is_published(hub):
    """Clients (and the fuzzing below) read the description from the service itself."""
    r = requests.get(f"{hub.url}{PREFIX}/api/openapi.json", timeout=30)
    assert r.status_code == 200
    assert r.json()["openapi"].startswith("3.")
    assert r.json()["servers"] == [{"url": PREFIX}]


@pytest.mark.parametrize("role", ["user", "admin"])
def test_fuzzing_the_api_finds_no_failure(hub, fuzzer, role):
    """The attacker sends whatever the description allows and whatever it does not (wrong
    types, missing fields, odd strings, huge numbers), as a signed-in user and with an
    administrator's token: no answer is a 5xx, and every 4xx is JSON with a message.

    Creating and starting instances get a few examples only (each is a real container);
    the path parameters are half the time the user's own and an existing instance, so the
    requests reach past the "no such thing" answers.
    """
    token = fuzzer.token if role == "user" else hub.client().token
    problems = fuzz(hub.url, token)
    assert not problems, "\n".join(f"{op}: {p}" for op, p in sorted(problems.items()))
