"""Auto-stop (idle, busy kernels, fixed run time, extend) and crash recovery, on a real hub with
real containers. The hub here checks every second and allows idle timeouts of seconds."""

from __future__ import annotations

import json
import subprocess
import time
import tomllib
from datetime import UTC, datetime, timedelta

import docker
import pytest
import requests
import websocket
from workbench import WorkbenchError
from workbench.times import parse_time

from tests.platform import execute, execute_request, run_code, running_hub, start_kernel

FAST = """
idle_stop_min_minutes = 0.05
lifecycle_interval_seconds = 1
activity_report_seconds = 2
poll_interval = 2
restart_backoff_seconds = 1
restart_max_attempts = 3
"""
SETTINGS = tomllib.loads(FAST)
# a check acts within an interval of the lifecycle loop; then a stop or start shows at once
SETTLE_SECONDS = 3 * SETTINGS["lifecycle_interval_seconds"]
# the longest a wrong restart could take to begin: the hub noticing the stop, the longest
# backoff, the next check, and room to spare
WRONG_RESTART_SECONDS = (
    SETTINGS["poll_interval"]
    + SETTINGS["restart_backoff_seconds"] * 2 ** (SETTINGS["restart_max_attempts"] - 1)
    + SETTLE_SECONDS
    + 5
)


@pytest.fixture(scope="module")
def lc_hub(tmp_path_factory, engine, base_image, test_catalog):
    """A hub of its own: these tests kill containers and restart the hub."""
    with running_hub(
        tmp_path_factory.mktemp("lifecycle"), engine.url, "lifecycle", FAST, test_catalog
    ) as h:
        yield h


@pytest.fixture(scope="module")
def alice(lc_hub):
    return lc_hub.add_user("lc-alice")


def wait_for(client, name, check, timeout=90, what="", hub=None):
    """The instance model once check(model) is true; fails with the last model (and the
    hub's last log lines about the instance, given the hub) if never."""
    deadline = time.monotonic() + timeout
    model = None
    while time.monotonic() < deadline:
        model = client.instance(name)
        if check(model):
            return model
        time.sleep(0.5)
    log = ""
    if hub is not None:
        lines = [line for line in hub.log_path.read_text().splitlines() if f":{name}" in line]
        log = "\nhub log:\n" + "\n".join(lines[-25:])
    raise AssertionError(f"{what or 'condition'} not reached in {timeout} s; last: {model}{log}")


def sleep_until(when: datetime):
    """Sleep until the (aware) time when has passed."""
    left = (when - datetime.now(UTC)).total_seconds()
    if left > 0:
        time.sleep(left)


def kill_container(engine, hub, name: str):
    """Kill the running container of an instance, as a crash would end it."""
    api = docker.APIClient(base_url=engine.url, timeout=60)
    [container] = [
        c
        for c in api.containers()
        if c["Names"][0].lstrip("/").startswith(hub.prefix) and c["Names"][0].endswith(f"--{name}")
    ]
    api.kill(container["Id"])


def create(client, name, **options):
    user = client.whoami()["name"]
    return client.api("POST", f"users/{user}/instances", {"name": name, **options})


def start_cell(client, instance_url: str, code: str, kernel_id: str = "") -> str:
    """Start running code without waiting for it, in a new kernel or the given one; the
    kernel's id."""
    base = client.url + instance_url.rstrip("/")
    kernel_id = kernel_id or start_kernel(client, instance_url)
    ws = websocket.create_connection(
        base.replace("http://", "ws://") + f"/api/kernels/{kernel_id}/channels",
        header=[f"Authorization: token {client.token}"],
        timeout=30,
    )
    _, msg = execute_request(code)
    ws.send(json.dumps(msg))
    ws.close()
    return kernel_id


def test_idle_instance_stops_and_says_why(lc_hub, alice):
    model = create(alice, "idle1", auto_stop={"idle_minutes": 0.1})
    assert model["state"] == "running"
    assert model["stop_reason"] == "idle" and model["stops_at"]
    # the home page shows when it stops
    page = lc_hub.browser_session("lc-alice", lc_hub.passwords["lc-alice"]).get(
        f"{lc_hub.url}/hub/home"
    )
    assert "instance-autostop" in page.text and "idle:" in page.text
    model = wait_for(alice, "idle1", lambda m: m["state"] == "stopped", 60, "idle stop")
    assert model["stopped_reason"] == "idle", model
    assert model["stopped_at"] and model["restarts"] == 0
    page = lc_hub.browser_session("lc-alice", lc_hub.passwords["lc-alice"]).get(
        f"{lc_hub.url}/hub/home"
    )
    cell = page.text[page.text.index("instance-autostop") :][:600]
    assert "instance-stopped-reason" in page.text, cell
    alice.delete_instance("idle1")


def test_busy_kernel_keeps_instance_running(lc_hub, alice):
    model = create(alice, "busy1", auto_stop={"idle_minutes": 0.1})
    # a cell that prints nothing for 4x the idle timeout
    out = run_code(alice, model["url"], "import time; time.sleep(25); print('done')", timeout=90)
    assert out["stdout"].strip() == "done", out
    assert alice.instance("busy1")["state"] == "running"
    # idle again once the cell is over
    model = wait_for(alice, "busy1", lambda m: m["state"] == "stopped", 60, "idle stop")
    assert model["stopped_reason"] == "idle"
    alice.delete_instance("busy1")


def test_open_tab_polling_does_not_count(lc_hub, alice):
    """What an open JupyterLab tab does on its own (GET polls) keeps nothing alive."""
    model = create(alice, "tab1", auto_stop={"idle_minutes": 0.1})
    base = alice.url + model["url"].rstrip("/")
    headers = {"Authorization": f"token {alice.token}"}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if alice.instance("tab1")["state"] != "running":
            break
        for path in ("api/kernels", "api/sessions", "api/terminals", "api/contents"):
            requests.get(f"{base}/{path}", headers=headers, timeout=10)
        time.sleep(1)
    model = wait_for(alice, "tab1", lambda m: m["state"] == "stopped", 30, "idle stop")
    assert model["stopped_reason"] == "idle"
    alice.delete_instance("tab1")


def test_write_requests_count_as_activity(lc_hub, alice):
    """Saving a file (a PUT to the contents API) keeps the instance running; what an open
    tab reads on its own does not (test_open_tab_polling_does_not_count)."""
    model = create(alice, "write1", flavor="cpu.tiny", auto_stop={"idle_minutes": 0.1})
    base = alice.url + model["url"].rstrip("/")
    headers = {"Authorization": f"token {alice.token}"}
    # a save every 2 s, for four times the 6 s idle timeout
    deadline, saves = time.monotonic() + 24, 0
    while time.monotonic() < deadline:
        body = {"type": "file", "format": "text", "content": f"save {saves}"}
        r = requests.put(f"{base}/api/contents/notes.txt", json=body, headers=headers, timeout=10)
        assert r.status_code in (200, 201), r.text
        saves += 1
        time.sleep(2)
    assert alice.instance("write1")["state"] == "running"
    model = wait_for(alice, "write1", lambda m: m["state"] == "stopped", 60, "idle stop")
    assert model["stopped_reason"] == "idle", model
    alice.delete_instance("write1")


def test_terminal_typing_and_running_commands_count_as_activity(lc_hub, alice):
    """Typing in a terminal counts; so does a command running in it with its tab closed.
    Once the command is over, the instance is idle again."""
    model = create(alice, "term1", flavor="cpu.tiny", auto_stop={"idle_minutes": 0.1})
    base = alice.url + model["url"].rstrip("/")
    headers = {"Authorization": f"token {alice.token}"}
    r = requests.post(f"{base}/api/terminals", headers=headers, timeout=60)
    r.raise_for_status()
    ws = websocket.create_connection(
        base.replace("http://", "ws://") + f"/terminals/websocket/{r.json()['name']}",
        header=[f"Authorization: token {alice.token}"],
        timeout=30,
    )
    # a key every 2 s at the shell's prompt (no command runs), four times the idle timeout
    deadline = time.monotonic() + 24
    while time.monotonic() < deadline:
        ws.send(json.dumps(["stdin", "x"]))
        time.sleep(2)
    assert alice.instance("term1")["state"] == "running"
    # Ctrl-U clears the typed keys; the command runs on after the tab is closed
    ws.send(json.dumps(["stdin", "\x15sleep 24; exit\r"]))
    ws.close()
    time.sleep(20)
    assert alice.instance("term1")["state"] == "running"
    model = wait_for(alice, "term1", lambda m: m["state"] == "stopped", 60, "idle stop")
    assert model["stopped_reason"] == "idle", model
    alice.delete_instance("term1")


def test_fixed_stop_stops_an_active_instance_and_extend_moves_it(lc_hub, alice):
    model = create(alice, "fixed1", auto_stop={"idle_minutes": 0, "max_hours": 0.005})
    assert model["stop_reason"] == "max runtime"
    start_cell(alice, model["url"], "import time; time.sleep(600)")
    # bad extends: a clear 400, nothing changed
    for body in (
        {"minutes": 0},
        {"minutes": -5},
        {"minutes": "soon"},
        {},
        {"minutes": 10**9},
        {"minutes": 5, "hours": 1},
    ):
        with pytest.raises(WorkbenchError) as e:
            alice.api("POST", "users/lc-alice/instances/fixed1/extend", body)
        assert e.value.status == 400, body
        assert "minutes" in e.value.message
    assert alice.instance("fixed1")["stops_at"] == model["stops_at"]
    extended = alice.extend_instance("fixed1", 0.25)
    assert extended["auto_stop"]["max_hours"] == pytest.approx(0.005 + 0.25 / 60, abs=1e-6)
    # the deadline moves by the extension, 15 s
    first, moved = parse_time(model["stops_at"]), parse_time(extended["stops_at"])
    assert (moved - first).total_seconds() == pytest.approx(15, abs=0.01)
    assert alice.instance("fixed1")["stops_at"] == extended["stops_at"]
    # past the first deadline (and the checks that would act on it), it still runs
    sleep_until(first + timedelta(seconds=SETTLE_SECONDS))
    model = alice.instance("fixed1")
    assert (model["state"], model["stops_at"]) == ("running", extended["stops_at"]), model
    model = wait_for(alice, "fixed1", lambda m: m["state"] == "stopped", 90, "fixed stop")
    assert model["stopped_reason"] == "max runtime", model
    assert parse_time(model["stopped_at"]) >= moved, model  # not before the new deadline
    # extending a stopped instance is refused
    with pytest.raises(WorkbenchError) as e:
        alice.extend_instance("fixed1", 10)
    assert e.value.status == 409 and "start it" in e.value.message
    alice.delete_instance("fixed1")


def test_bad_auto_stop_values_and_other_users(lc_hub, alice):
    for auto_stop in (
        {"idle_minutes": 0.01},
        {"idle_minutes": 10**6},
        {"max_hours": -1},
        {"max_hours": 10**4},
        {"idle_minutes": "soon"},
        {"sometime": 1},
    ):
        with pytest.raises(WorkbenchError) as e:
            create(alice, "bad1", auto_stop=auto_stop, start=False)
        assert e.value.status == 400, auto_stop
    assert "bad1" not in [i["name"] for i in alice.instances()]
    create(alice, "mine1", start=False)
    with pytest.raises(WorkbenchError) as e:
        alice.set_auto_stop("mine1", idle_minutes=0.001)
    assert e.value.status == 400 and "out of range" in e.value.message
    changed = alice.set_auto_stop("mine1", idle_minutes=30, max_hours=2)
    assert changed["auto_stop"] == {"idle_minutes": 30, "max_hours": 2}
    bob = lc_hub.add_user("lc-bob")
    for call in (
        lambda: bob.api("PATCH", "users/lc-alice/instances/mine1", {"auto_stop": {}}),
        lambda: bob.api("POST", "users/lc-alice/instances/mine1/extend", {"minutes": 5}),
    ):
        with pytest.raises(WorkbenchError) as e:
            call()
        assert e.value.status == 404
    assert alice.instance("mine1")["auto_stop"] == {"idle_minutes": 30, "max_hours": 2}
    alice.delete_instance("mine1")


def test_killed_container_comes_back_with_its_files(lc_hub, alice, engine):
    model = create(alice, "crash1", auto_stop={"idle_minutes": 0})
    out = run_code(alice, model["url"], "open('keep.txt', 'w').write('still here')")
    assert out["error"] is None, out
    kill_container(engine, lc_hub, "crash1")
    model = wait_for(
        alice,
        "crash1",
        lambda m: m["state"] == "running" and m["restarts"] == 1,
        110,  # the restart's start may take up to start_timeout (120 s) less the backoff
        "restart",
        hub=lc_hub,
    )
    assert "killed" in model["last_crash"], model
    out = run_code(alice, model["url"], "print(open('keep.txt').read())")
    assert out["stdout"].strip() == "still here", out
    alice.stop_instance("crash1")
    stopped = alice.instance("crash1")
    # a requested stop is no crash: not restarted, count reset; watched for longer than a
    # wrong restart would take to show (noticing the stop, the longest backoff, a check)
    assert stopped["stopped_reason"] == "stopped" and stopped["restarts"] == 0
    deadline = time.monotonic() + WRONG_RESTART_SECONDS
    while time.monotonic() < deadline:
        model = alice.instance("crash1")
        assert (model["state"], model["restarts"], model["restart_pending"]) == (
            "stopped",
            0,
            False,
        ), model
        time.sleep(0.5)
    alice.delete_instance("crash1")


def test_kernel_out_of_memory_is_reported(lc_hub, alice):
    model = create(alice, "oom1", flavor="cpu.tiny", auto_stop={"idle_minutes": 0})
    with pytest.raises(TimeoutError):
        # 2 GiB written in a 1 GiB instance: the kernel is killed, no reply comes
        run_code(alice, model["url"], "x = b'1' * (2 * 1024**3)", timeout=40)
    model = wait_for(alice, "oom1", lambda m: m["out_of_memory"], 30, "OOM report")
    assert "out of memory at 1 GiB" in model["out_of_memory"]["message"], model
    assert model["state"] == "running"  # only the kernel died
    alice.stop_instance("oom1")
    alice.delete_instance("oom1")


def test_out_of_memory_of_the_server_is_a_crash_with_its_reason(lc_hub, alice):
    """The Jupyter server itself killed for lack of memory ends the container: a crash that
    says so (not only its exit code), and the instance is started again."""
    model = create(alice, "oomc", flavor="cpu.tiny", auto_stop={"idle_minutes": 0})
    # the server (this kernel's parent) first in line for the OOM killer, from a kernel
    # started before (one started after would inherit that); then 2 GiB in 1 GiB
    kernel = start_kernel(alice, model["url"])
    first_in_line = (
        "import os\npath = f'/proc/{os.getppid()}/oom_score_adj'\n"
        "open(path, 'w').write('1000')\n"
        "print(open(path).read().strip(), open('/proc/self/oom_score_adj').read().strip())"
    )
    out = execute(alice, model["url"], kernel, first_in_line)
    assert out["stdout"].split() == ["1000", "0"], out
    start_cell(alice, model["url"], "x = b'1' * (2 * 1024**3)", kernel)
    try:
        model = wait_for(
            alice, "oomc", lambda m: m["state"] == "running" and m["restarts"] == 1, 120, "restart"
        )
        assert model["last_crash"] == "out of memory at 1 GiB", model
    finally:
        if alice.instance("oomc")["state"] != "stopped":
            alice.stop_instance("oomc")
        alice.delete_instance("oomc")


def test_crashes_past_the_restart_attempts_leave_it_failed(lc_hub, alice, engine):
    """Each crash is restarted, up to restart_max_attempts; the next one leaves the instance
    failed, saying why and what to do, and not restarted until its owner starts it."""
    create(alice, "fail1", flavor="cpu.tiny", auto_stop={"idle_minutes": 0})
    attempts = SETTINGS["restart_max_attempts"]
    for attempt in range(1, attempts + 1):
        kill_container(engine, lc_hub, "fail1")
        wait_for(
            alice,
            "fail1",
            lambda m, n=attempt: m["state"] == "running" and m["restarts"] == n,
            120,
            f"restart {attempt}",
        )
    kill_container(engine, lc_hub, "fail1")
    model = wait_for(alice, "fail1", lambda m: m["state"] == "failed", 60, "failed")
    assert model["restarts"] == attempts and "killed" in model["last_crash"], model
    assert f"was restarted {attempts} times" in model["error"], model
    assert "Start it again yourself" in model["error"], model
    deadline = time.monotonic() + WRONG_RESTART_SECONDS
    while time.monotonic() < deadline:
        model = alice.instance("fail1")
        assert (model["state"], model["restart_pending"]) == ("failed", False), model
        time.sleep(0.5)
    assert alice.start_instance("fail1")["state"] == "running"
    alice.stop_instance("fail1")
    alice.delete_instance("fail1")


def test_hub_restart_keeps_running_instances(lc_hub, alice):
    started = {}
    for name in ("keep1", "keep2"):
        started[name] = create(alice, name, auto_stop={"idle_minutes": 0})["started"]
    lc_hub.restart()
    for name in ("keep1", "keep2"):
        model = alice.instance(name)
        assert model["state"] == "running", model
        # the same run: not restarted by the hub or the platform
        assert model["started"] == started[name] and model["restarts"] == 0
        out = run_code(alice, model["url"], "print(6 * 7)")
        assert out["stdout"].strip() == "42", out
    for name in ("keep1", "keep2"):
        alice.stop_instance(name)
        alice.delete_instance(name)


def test_open_ssh_session_keeps_instance_running(lc_hub, alice, tmp_path):
    """An SSH session counts as activity: the gateway reports it to the hub while it is open."""
    key = tmp_path / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
        check=True,
        capture_output=True,
    )
    alice.add_key("lc-laptop", (tmp_path / "id_ed25519.pub").read_text())
    create(
        alice,
        "ssh1",
        flavor="cpu.tiny",
        auto_stop={"idle_minutes": 0.1},
        ssh={"enabled": True, "allowlist": []},
    )
    ssh = [
        "ssh",
        "-i",
        str(key),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        f"UserKnownHostsFile={tmp_path / 'known_hosts'}",
        "-p",
        str(lc_hub.ssh_port),
        "lc-alice.ssh1@127.0.0.1",
        "sleep 25",
    ]
    session = subprocess.Popen(ssh, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # four times the 6 s idle timeout, with nothing but the SSH session going on
        time.sleep(24)
        assert alice.instance("ssh1")["state"] == "running"
    finally:
        _, err = session.communicate(timeout=60)
    assert session.returncode == 0, err
    model = wait_for(alice, "ssh1", lambda m: m["state"] == "stopped", 60, "idle stop")
    assert model["stopped_reason"] == "idle"
    alice.delete_instance("ssh1")
