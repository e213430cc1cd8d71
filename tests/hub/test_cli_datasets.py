"""`workbench datasets ...`: usage errors and missing local files before any request (exit 2),
the server's refusals as exit 1 with its message, and the whole path on the real hub: create
from a local folder, upload more, labels, samples, stats, publish, versions, diff, export,
delete."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile

import pytest

from tests.client.test_datasets_sdk import image_bytes, pets_folder
from tests.platform import REPO, free_port


def run_cli(*args, home, url=None, expect=0, timeout=300):
    env = {**os.environ, "HOME": str(home)}
    env.pop("WORKBENCH_TOKEN", None)
    env.pop("JUPYTERHUB_SERVER_NAME", None)
    proc = subprocess.run(
        [sys.executable, "-m", "hub.cli", *args, *(["--url", url] if url else [])],
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
        (["datasets", "create", "pets", "--type", "images"], "invalid choice: 'images'"),
        (["datasets", "create", "pets"], "required: --type"),
        (
            ["datasets", "create", "pets", "--type", "image_classification"]
            + ["--folder", "/no/pets"],
            "No such folder: /no/pets",
        ),
        (["datasets", "upload", "pets", "/no/such.png"], "No such file or folder: /no/such.png"),
        (["datasets", "upload", "pets"], "required: PATH"),
        (["datasets", "import", "pets", "/no/coco.zip", "--format", "coco"], "No such file"),
        (["datasets", "import", "pets", "--format", "coco"], "give a local PATH"),
        (
            ["datasets", "import", "pets", "--format", "coco", "--instance", "nb"],
            "--instance needs --source-path",
        ),
        (["datasets", "export", "pets", "--format", "kitti"], "invalid choice: 'kitti'"),
        (["datasets", "export", "pets"], "required: --format"),
        (["datasets", "diff", "pets", "2"], "required: against"),
        (["datasets", "samples", "pets", "--status", "done"], "invalid choice: 'done'"),
        (["datasets", "show", "a/b/c"], "not a dataset's NAME or OWNER/NAME"),
        (["datasets", "label", "add", "pets"], "required: label"),
        (["datasets", "tasks", "create", "pets", "t", "--labellers", ","], "at least one user"),
        (
            ["datasets", "tasks", "create", "pets", "t", "--labellers", "a", "--ids", "1,x"],
            "not a comma-separated list of sample ids",
        ),
    ],
)
def test_usage_errors_exit_2_before_any_request(tmp_path, args, message):
    """The platform's address answers nothing: a request would fail with exit 1."""
    url = f"http://127.0.0.1:{free_port()}"
    out = run_cli(*args, home=tmp_path, url=url, expect=2)
    assert message in out
    assert "not reachable" not in out


def test_no_platform_is_exit_1(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    out = run_cli("datasets", "list", home=tmp_path, url=url, expect=1)
    assert "error: The platform API" in out and "not reachable" in out


# --- on the real hub ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli(hub, tmp_path_factory):
    """Run `workbench ...` as the signed-in user dscli; the user's client as cli.client."""
    home = tmp_path_factory.mktemp("dscli-home")
    client = hub.add_user("dscli")

    def run(*args, expect=0, password=None, timeout=300):
        env = {**os.environ, "HOME": str(home), "WORKBENCH_CONFIG": str(hub.config)}
        env.pop("WORKBENCH_TOKEN", None)
        env.pop("JUPYTERHUB_SERVER_NAME", None)
        if password:
            env["WORKBENCH_PASSWORD"] = password
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

    run("login", "--user", "dscli", "--url", hub.url, password=hub.passwords["dscli"])
    run.client = client
    yield run
    for dataset in client.datasets.list():
        client.datasets.delete(dataset["name"])


@pytest.mark.integration
def test_datasets_from_the_command_line(cli, tmp_path):
    folder = tmp_path / "pets"
    files = pets_folder(folder)
    out = cli(
        *("datasets", "create", "pets", "--type", "image_classification", "--folder", str(folder)),
        *("--labels", "cat,dog", "--description", "cats and dogs"),
    )
    assert "Created dataset pets (image_classification) with 6 samples and 2 labels." in out
    out = cli("datasets", "list")
    assert "pets" in out and "image_classification" in out and "cats and dogs" in out
    listed = json.loads(cli("datasets", "list", "--json"))
    assert [(d["name"], d["samples"]) for d in listed] == [("pets", 6)]

    # more files: new ones added, the same ones again unchanged
    more = tmp_path / "more"
    more.mkdir()
    (more / "m1.png").write_bytes(image_bytes())
    (more / "m2.jpg").write_bytes(image_bytes(fmt="JPEG"))
    out = cli("datasets", "upload", "pets", str(more))
    assert "Uploaded to dscli/pets: 2 added, 0 unchanged; 8 samples in all." in out
    out = cli("datasets", "upload", "pets", str(more))
    assert "0 added, 2 unchanged; 8 samples in all." in out
    notes = tmp_path / "notes.png"
    notes.write_text("not an image")
    out = cli("datasets", "upload", "pets", str(notes), expect=1)
    assert out.startswith("error:") and "notes.png" in out
    out = cli("datasets", "upload", "nopets", str(more), expect=1)
    assert out.startswith("error:") and "nopets" in out

    # labels: add, rename, delete
    out = cli("datasets", "label", "add", "pets", "bird", "--key", "b", "--color", "#112233")
    assert "Added label bird to pets." in out
    assert [line.split() for line in out.splitlines() if line.startswith("bird")] == [
        ["bird", "#112233", "b"]
    ]
    out = cli("datasets", "label", "rename", "pets", "bird", "parrot")
    assert "Renamed label bird of pets to parrot." in out and "parrot" in out
    out = cli("datasets", "label", "delete", "pets", "parrot")
    assert "Deleted label parrot" in out
    out = cli("datasets", "label", "list", "pets")
    assert "cat" in out and "dog" in out and "parrot" not in out
    out = cli("datasets", "label", "delete", "pets", "horse", expect=1)
    assert out.startswith("error:") and "horse" in out

    # samples and stats
    out = cli("datasets", "samples", "pets", "--status", "unlabelled", "--limit", "3")
    rows = out.splitlines()
    assert rows[0].split()[:3] == ["ID", "KEY", "STATUS"] and len(rows) == 4
    samples = json.loads(cli("datasets", "samples", "pets", "--json", "--limit", "100"))
    assert sorted(s["key"] for s in samples) == sorted([*files, "m1.png", "m2.jpg"])
    out = cli("datasets", "stats", "pets")
    assert [line.split() for line in out.splitlines() if line.startswith("unlabelled")] == [
        ["unlabelled", "8"]
    ]
    dataset = cli.client.datasets.get("pets")
    dataset.annotate_many(
        {s["id"]: "dog" if s["key"].startswith("dogs/") else "cat" for s in samples}
    )
    stats = json.loads(cli("datasets", "stats", "pets", "--json"))
    assert stats["labelled"] == 8 and stats["per_label"] == {"cat": 5, "dog": 3}

    # versions: publish, list, diff
    out = cli("datasets", "publish", "pets", "--description", "first", "--train-ratio", "0.75")
    assert "Published dscli/pets version 1 (ready): 8 samples, 8 labelled." in out
    assert '"dataset": "dscli/pets", "version": 1' in out
    d1 = next(s for s in samples if s["key"] == "dogs/d1.jpg")
    dataset.annotate(d1["id"], "cat")
    second = json.loads(cli("datasets", "publish", "pets", "--json"))
    assert second["version"] == 2 and second["state"] == "ready"
    out = cli("datasets", "versions", "pets")
    assert [line.split()[:3] for line in out.splitlines()[1:]] == [
        ["1", "ready", "8"],
        ["2", "ready", "8"],
    ]
    out = cli("datasets", "diff", "pets", "2", "1")
    assert "Version 2 against 1: 0 added, 0 removed, 1 relabelled." in out
    assert "~ dogs/d1.jpg: dog -> cat" in out
    out = cli("datasets", "show", "pets")
    assert "Dataset pets of dscli" in out and "type:     image_classification" in out
    assert "samples:  8" in out

    # exports to files
    exports = tmp_path / "exports"
    exports.mkdir()
    out = cli(
        *("datasets", "export", "pets", "--format", "modelarts"),
        *("--version", "1", "--to", str(exports)),
    )
    assert "Exported dscli/pets version 1 as modelarts to " in out
    (target,) = exports.iterdir()
    assert str(target) in out
    with zipfile.ZipFile(target) as z:
        manifest = [json.loads(line) for line in z.read("manifest.jsonl").splitlines()]
    assert len(manifest) == 8
    out = cli("datasets", "export", "pets", "--format", "coco", "--to", str(exports), expect=1)
    assert out.startswith("error:") and "coco" in out
    assert len(list(exports.iterdir())) == 1  # nothing half-written

    # a labelling task over the labelled samples
    out = cli(
        *("datasets", "tasks", "create", "pets", "check", "--labellers", "dscli"),
        *("--reviewers", "dscli", "--status", "labelled"),
    )
    assert "Created task check of pets: 8 samples dealt out." in out
    out = cli("datasets", "tasks", "list", "pets")
    assert [line.split()[:3] for line in out.splitlines()[1:]] == [["check", "running", "dscli"]]
    out = cli("datasets", "tasks", "show", "pets", "check")
    assert [line.split()[:2] for line in out.splitlines() if line.startswith("dscli")] == [
        ["dscli", "8"]
    ]
    out = cli("datasets", "tasks", "delete", "pets", "check")
    assert "Deleted task check of pets" in out
    assert "has no labelling tasks" in cli("datasets", "tasks", "list", "pets")

    # an export imported into a new dataset
    out = cli("datasets", "create", "pets2", "--type", "image_classification", "--label", "cat")
    assert "Created dataset pets2 (image_classification) with 0 samples and 1 label." in out
    assert "workbench datasets upload pets2 FOLDER" in out
    out = cli("datasets", "import", "pets2", str(target), "--format", "modelarts")
    assert "Imported modelarts into dscli/pets2: 8 added, 8 annotated; 8 samples in all." in out

    # unknown datasets and deleting
    out = cli("datasets", "show", "nopets", expect=1)
    assert out.startswith("error:") and "nopets" in out
    out = cli("datasets", "delete", "pets", "--version", "1")
    assert "Deleted version 1 of dataset dscli/pets." in out
    out = cli("datasets", "delete", "pets")
    assert "Deleted dataset dscli/pets" in out
    out = cli("datasets", "stats", "pets", expect=1)
    assert out.startswith("error:")
