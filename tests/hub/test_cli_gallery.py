"""`workbench gallery ...`: usage errors before any request (exit 2), the server's refusals as
exit 1 with its message, and the path on the real hub: a dataset version published from the
command line, searched, shown, starred, edited, taken by another user as a dataset of their own,
and unpublished."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.client.test_datasets_sdk import pets_folder
from tests.platform import REPO, free_port

OWNER, TAKER = "galcli-ada", "galcli-bo"


def run_cli(*args, home, env=None, expect=0, timeout=300):
    env = {**os.environ, "HOME": str(home), **(env or {})}
    env.pop("WORKBENCH_TOKEN", None)
    env.pop("JUPYTERHUB_SERVER_NAME", None)
    proc = subprocess.run(
        [sys.executable, "-m", "hub.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=timeout,
    )
    assert proc.returncode == expect, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["publish", "--title", "x"], "give one thing to publish: a notebook or folder PATH"),
        (
            ["publish", "nb.ipynb", "--model", "m", "--title", "x"],
            "(not PATH and --model)",
        ),
        (["publish", "--model", "m"], "--title is required (1-120 characters)"),
        (["publish", "--model", "m", "--title", "  "], "--title is required"),
        (["publish", "--image", "env:v1", "--version", "2", "--title", "x"], "--version is for"),
        (["publish", "--model", "m", "--instance", "nb", "--title", "x"], "--instance goes with"),
        (["publish", "a.ipynb", "--title", "x"], "Outside an instance, say which"),
        (
            ["publish", "../a.ipynb", "--instance", "nb", "--title", "x"],
            "'..' is not allowed",
        ),
        (["publish", "--model", "m", "--title", "x", "--visibility", "team"], "invalid choice"),
        (["publish", "--model", "m", "--asset", "3", "--title", "x"], "--asset publishes a new"),
        (
            ["publish", "--model", "m", "--title", "x", "--description", "@/no/such.md"],
            "--description: cannot read /no/such.md",
        ),
        (["show", "three"], "'three' is not a gallery asset's id"),
        (["use", "0"], "'0' is not a gallery asset's id"),
        (["star"], "required: id"),
        (["search", "--kind", "notebooks"], "invalid choice: 'notebooks'"),
        (["search", "--sort", "popular"], "invalid choice: 'popular'"),
        (["update", "3"], "nothing to change"),
        (["update", "3", "--tag", "a", "--no-tags"], "give --tag or --no-tags, not both"),
        (["unpublish"], "required: id"),
    ],
)
def test_usage_errors_exit_2_before_any_request(tmp_path, args, message):
    """The platform's address answers nothing: a request would fail with exit 1."""
    url = f"http://127.0.0.1:{free_port()}"
    out = run_cli("gallery", *args, "--url", url, home=tmp_path, expect=2)
    assert message in out
    assert "not reachable" not in out


# --- on the real hub ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def users(hub, tmp_path_factory):
    """Run `workbench ...` as OWNER (who has a dataset with a published version) or TAKER,
    each signed in from a HOME of their own."""
    clients, homes = {}, {}
    env = {"WORKBENCH_CONFIG": str(hub.config)}
    for user in (OWNER, TAKER):
        clients[user] = hub.add_user(user)
        homes[user] = tmp_path_factory.mktemp(f"{user}-home")
        run_cli(
            *("login", "--user", user, "--url", hub.url),
            home=homes[user],
            env={**env, "WORKBENCH_PASSWORD": hub.passwords[user]},
        )
    folder = tmp_path_factory.mktemp("galcli-pets")
    pets_folder(folder)
    dataset = clients[OWNER].datasets.create(
        "galcli-pets", "image_classification", labels=["cat", "dog"], folder=folder
    )
    for sample in dataset.samples():
        dataset.annotate(sample["id"], "cat" if sample["key"].startswith("cats/") else "dog")
    dataset.publish().wait()

    def run(user, *args, expect=0):
        return run_cli(*args, home=homes[user], env=env, expect=expect)

    run.clients = clients
    run.homes = homes
    yield run
    for user, client in clients.items():
        for asset in client.gallery.search(mine=True):
            client.gallery.unpublish(asset["id"])
        for item in client.datasets.list():
            if item.get("owner", user) == user:
                client.datasets.delete(item["name"])


def table(out: str, header: str) -> list[list[str]]:
    """The rows (cells split on runs of 2+ spaces) of the table under the line starting with
    `header`, up to the first empty line."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        rows.append(re.split(r"\s{2,}", line.strip()))
    return rows


@pytest.mark.integration
def test_a_dataset_version_shared_and_taken_from_the_command_line(users, tmp_path):
    description = tmp_path / "README.md"
    description.write_text("# Pets\nSix **small** images of cats and dogs.\n")
    out = users(
        OWNER,
        *("gallery", "publish", "--dataset", "galcli-pets", "--version", "1"),
        *("--title", "Galcli pets", "--description", f"@{description}"),
        *("--tag", "Vision,pets", "--tag", "tiny"),
    )
    published = re.search(
        r"^Published version 1 of gallery asset (\d+) \(dataset\): Galcli pets$", out, re.M
    )
    assert published, out
    asset_id = published[1]

    # found by text, tag and kind; not by another kind
    out = users(TAKER, "gallery", "search", "galcli", "--tag", "pets", "--kind", "dataset")
    rows = table(out, "ID")
    assert [(r[0], r[1], r[2], r[3], r[5]) for r in rows] == [
        (asset_id, "dataset", "Galcli pets", OWNER, "vision,pets,tiny")
    ]
    assert "1 asset(s)." in out and "pets (1)" in out
    out = users(TAKER, "gallery", "search", "galcli", "--kind", "model")
    assert "No gallery asset matches" in out

    out = users(TAKER, "gallery", "show", asset_id)
    assert f"Gallery asset {asset_id}: Galcli pets" in out
    assert "Six **small** images of cats and dogs." in out
    assert re.search(rf"^  dataset:\s+{OWNER}/galcli-pets$", out, re.M), out
    assert f"Take it: workbench gallery use {asset_id}" in out

    out = users(TAKER, "gallery", "star", asset_id)
    assert f"Starred gallery asset {asset_id} (1 star(s))." in out
    out = users(TAKER, "gallery", "search", "--owner", OWNER, "--sort", "stars")
    assert table(out, "ID")[0][7] == "1*"  # starred by the caller
    out = users(TAKER, "gallery", "unstar", asset_id)
    assert f"Took your star back from gallery asset {asset_id} (0 star(s))." in out

    # taken as the taker's own dataset
    out = users(TAKER, "gallery", "use", asset_id, "--name", "galcli-mine")
    assert f"Dataset {TAKER}/galcli-mine version 1" in out, out
    mine = users.clients[TAKER].datasets.get("galcli-mine")
    assert mine.version(1).wait().data["samples"] == 6

    # edited by its owner only
    out = users(TAKER, "gallery", "update", asset_id, "--title", "Mine now", expect=1)
    assert out.startswith("error: ")
    out = users(OWNER, "gallery", "update", asset_id, "--title", "Pets, small", "--no-tags")
    assert f"Updated gallery asset {asset_id}: Pets, small" in out
    asset = users.clients[OWNER].gallery.get(int(asset_id))
    assert (asset["title"], asset["tags"], asset["uses"]) == ("Pets, small", [], 1)

    # the server's refusals: exit 1 with its reason
    out = users(OWNER, "gallery", "update", asset_id, "--tag", "Not a tag!", expect=1)
    assert out.startswith("error: ") and "not a tag!" in out.lower()
    out = users(
        TAKER,
        *("gallery", "publish", "--dataset", f"{OWNER}/galcli-pets", "--version", "1"),
        *("--title", "Not mine"),
        expect=1,
    )
    assert out.startswith("error: ")
    out = users(OWNER, "gallery", "use", asset_id, expect=1)  # the name is taken
    assert out.startswith("error: ") and "name" in out

    out = users(OWNER, "gallery", "unpublish", asset_id)
    assert f"Unpublished gallery asset {asset_id} and all its versions." in out
    out = users(TAKER, "gallery", "show", asset_id, expect=1)
    assert out.strip() == f"error: No gallery asset {asset_id} that you may see."
    # what was taken stays
    assert users.clients[TAKER].datasets.get("galcli-mine").name == "galcli-mine"
