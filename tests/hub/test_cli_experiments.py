"""`workbench jobs search|searches|trials|compare|search-stop`: usage errors before any request,
and a small search of the quadratic script on the real hub from the command line."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys

import pytest

from tests.platform import REPO, free_port

QUADRATIC = REPO / "tests" / "training_bridge" / "experiments" / "job_quadratic.py"
PARAMS = ["--param", "x=float:-1:1", "--param", "lr=float:1e-3:1e-1:log"]
PARAMS += ["--param", "opt=choice:sgd,adam"]


def run_cli(*args, home, env=None, expect=0):
    env = {**os.environ, "HOME": str(home), **(env or {})}
    env.pop("WORKBENCH_TOKEN", None)
    env.pop("JUPYTERHUB_SERVER_NAME", None)
    proc = subprocess.run(
        [sys.executable, "-m", "hub.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=600,
    )
    assert proc.returncode == expect, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["search", "{py}", "--param", "x=float:1"], "x='float:1' is not one of NAME=float:"),
        (["search", "{py}", "--param", "x"], "--param 'x' is not NAME=float:LOW:HIGH[:log]"),
        (["search", "{py}", "--param", "n=int:1:2.5"], "high '2.5' is not a whole number"),
        (["search", "{py}", "--param", "o=choice:"], "gives no choices"),
        (["search", "{py}"], "give the parameters to search: --param"),
        (["search", "--param", "x=float:0:1"], "give PATH (the code to search with) or --job"),
        (["search", "{py}", "--space", "[1]"], "--space is not a JSON object"),
        (["search", "{py}", "--space", "{{x"], "--space is not JSON"),
        (["search", "{py}", "--param", "x=float:0:1", "--fixed", "n"], "'n' is not NAME=VALUE"),
        (["search", "{py}", "--param", "x=float:0:1", "--trials", "many"], "invalid int value"),
        (["compare", "tune/1", "a/b/c/d"], "run 'a/b/c/d' is not owner/name/version"),
        (["compare"], "give runs (NAME/VERSION or OWNER/NAME/VERSION) or --search ID"),
        (["trials", "four"], "invalid int value: 'four'"),
    ],
)
def test_usage_errors_exit_2_before_any_request(tmp_path, args, message):
    """The platform's address answers nothing: a request would fail with exit 1."""
    (tmp_path / "train.py").write_text("print(1)\n")
    args = [a.format(py=tmp_path / "train.py") for a in args]
    url = f"http://127.0.0.1:{free_port()}"
    out = run_cli("jobs", *args, "--url", url, home=tmp_path, expect=2)
    assert message in out
    assert "not reachable" not in out


# --- on the real hub ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli(hub, tmp_path_factory):
    """Run `workbench ...` as a signed-in user with her own HOME."""
    home = tmp_path_factory.mktemp("excli-home")
    hub.add_user("excli-ben")
    env = {"WORKBENCH_CONFIG": str(hub.config)}

    def run(*args, expect=0):
        return run_cli(*args, home=home, env=env, expect=expect)

    run_cli(
        *("login", "--user", "excli-ben", "--url", hub.url),
        home=home,
        env={**env, "WORKBENCH_PASSWORD": hub.passwords["excli-ben"]},
    )
    return run


def table(out: str, header: str) -> list[list[str]]:
    """The rows (cells split on runs of 2+ spaces) of the table under the line starting
    with `header`, up to the first line that is not a row."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 1 :]:
        if not line or line.startswith(("Best:", "*")):
            break
        rows.append(re.split(r"\s{2,}", line.strip()))
    return rows


@pytest.mark.integration
def test_a_search_from_the_command_line(cli):
    out = cli(
        *("jobs", "search", str(QUADRATIC), "--job", "excli-quad", *PARAMS),
        *("--image", "python", "--flavor", "cpu.tiny", "--fixed", "steps=4"),
        *("--fixed", "sleep=0.2", "--trials", "4", "--parallel", "2", "--sampler", "random"),
        *("--seed", "3", "--pruner", "none", "--wait"),
    )
    started = re.search(r"^Started search (\d+): (.*)$", out, re.M)
    assert started and started[2] == "4 trials of job excli-quad, 2 at once, minimize loss.", out
    search_id = started[1]
    # progress while it ran, then the trials and the best
    assert f"Search {search_id} (excli-quad) completed: 4 of 4 trials ended (4 complete)" in out
    rows = table(out, "TRIAL")
    assert len(rows) == 4 and {r[2] for r in rows} == {"complete"}, out
    for row in rows:
        params = dict(p.split("=") for p in row[5].split())
        final = (float(params["x"]) - 0.3) ** 2 + (math.log10(float(params["lr"])) + 2) ** 2
        final += 0.0 if params["opt"] == "adam" else 0.5
        # the table shows 4 significant digits of the parameters and the loss
        assert float(row[3]) == pytest.approx(final * 1.5, rel=2e-3, abs=1e-3)
    best_rows = [r for r in rows if r[0].endswith(" *")]
    assert len(best_rows) == 1
    best = best_rows[0]
    assert float(best[3]) == min(float(r[3]) for r in rows)
    best_line = f"Best: trial {best[0][:-2]} (version {best[1]} of excli-quad): loss {best[3]}"
    assert f"{best_line} with " in out

    # the same trials later, and the search in the list
    assert table(cli("jobs", "trials", search_id), "TRIAL") == rows
    listed = table(cli("jobs", "searches"), "ID")
    assert [search_id, "excli-quad", "excli-ben", "completed", "4/4", "min loss", best[3]] == (
        listed[0][:7]
    )

    # two runs compared: a column per parameter and metric, those that differ marked
    trial_of = {r[1]: r for r in rows}  # by version
    params_of = {v: dict(p.split("=") for p in r[5].split()) for v, r in trial_of.items()}
    out = cli("jobs", "compare", "excli-quad/1", "excli-ben/excli-quad/2")
    opt = "opt *" if params_of["1"]["opt"] != params_of["2"]["opt"] else "opt"
    header = re.split(r"\s{2,}", out.splitlines()[0])
    assert header == ["RUN", "STATE", "lr *", opt, "sleep", "steps", "x *", "loss *"], out
    compared = table(out, "RUN")
    assert len(compared) == 2, out
    for row, version in zip(compared, ("1", "2"), strict=True):
        trial, params = trial_of[version], params_of[version]
        assert row[:2] == [f"excli-quad trial {trial[0].removesuffix(' *')}", "succeeded"]
        assert row[2:] == [params["lr"], params["opt"], "0.2", "4", params["x"], trial[3]]
    assert out.rstrip().endswith("* differs between the runs")
    out = cli("jobs", "compare", "--search", search_id)
    assert len(table(out, "RUN")) == 4

    # refusals of the platform: exit 1 with its reason
    out = cli("jobs", "search", "--job", "excli-quad", "--param", "x=float:1:0", expect=1)
    assert out.startswith("error: ") and "space.x: low (1) must be below high (0)." in out
    out = cli("jobs", "trials", "999999", expect=1)
    assert out.startswith("error: ")
    assert f"Search {search_id} had already ended (completed)." in cli(
        "jobs", "search-stop", search_id
    )

    # a search of the existing job, stopped while its first trial runs
    out = cli(
        *("jobs", "search", "--job", "excli-quad", "--param", "x=float:-1:1", "--fixed"),
        *("steps=100", "--fixed", "sleep=1", "--trials", "3", "--sampler", "random"),
    )
    second = re.search(r"^Started search (\d+): 3 trials of job excli-quad, 1 at once", out, re.M)
    assert second, out
    assert f"Follow it: workbench jobs trials {second[1]}" in out
    out = cli("jobs", "search-stop", second[1])
    assert re.search(rf"^Stopp(ed|ing) search {second[1]}\.$", out, re.M), out
    assert re.search(rf"^Search {second[1]} \(excli-quad\) stopp(ed|ing): ", out, re.M), out
    out = cli("jobs", "trials", second[1])
    head = f"Search {second[1]} of excli-ben over job excli-quad"
    assert re.search(rf"^{head} \(stopp(ed|ing): stopped by excli-ben\)", out), out
    assert {r[2] for r in table(out, "TRIAL")} <= {"stopped", "waiting", "running"}
