"""Models against a real hub: versions registered from a finished job's output and from an
instance's storage (copied by a real container), lineage and metrics, visibility, refusals
that leave nothing behind, and files checked again before a deployment.

The module runs a hub of its own whose models may be at most 1 MiB, so that the size limit
is reached with small files."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from workbench import WorkbenchError

from hub.service.api import APIError
from inference_bridge import model_files, model_spec
from tests.platform import engine_names, run_code, running_hub
from tests.training_bridge.jobs_helpers import archive, submit, wait_for

ONNX = b"\x08\x07onnx-bytes" * 64
PREDICTOR = "class Model:\n    def predict(self, x):\n        return x\n"
VOCAB = "a\nb\nc\n"
TRAIN = f"""\
import os
out = os.environ["WORKBENCH_OUTPUT_DIR"]
def write(path, data):
    os.makedirs(os.path.dirname(os.path.join(out, path)), exist_ok=True)
    with open(os.path.join(out, path), "wb") as f:
        f.write(data)
write("model/model.onnx", {ONNX!r})
write("model/predictor.py", {PREDICTOR!r}.encode())
write("model/sub/vocab.txt", {VOCAB!r}.encode())
write("linked/model.onnx", {ONNX!r})
os.symlink("/etc/passwd", os.path.join(out, "linked", "passwd"))
write("big/model.onnx", os.urandom(2 * 1024 * 1024))
write("two/a.onnx", b"a")
write("two/b.onnx", b"b")
for step, value in enumerate([0.5, 0.9, 0.93]):
    print(f"workbench-metric name=accuracy value={{value}} step={{step}}", flush=True)
print(f"workbench-metric name=loss value=0.2 step=0", flush=True)
"""
# what the instance writes into its storage: a model, a folder holding a link that leads
# out of it, a link on the way to a folder, a folder too big, and a device-free plain file
STORAGE = """\
import os
os.makedirs("models/net/weights", exist_ok=True)
open("models/net/model.pt", "wb").write(b"torchscript" * 100)
open("models/net/predictor.py", "w").write("class Model: pass\\n")
open("models/net/weights/w.bin", "wb").write(bytes(range(256)))
os.makedirs("models/evil", exist_ok=True)
open("models/evil/model.onnx", "wb").write(b"x")
if not os.path.islink("models/evil/passwd"):
    os.symlink("/etc/passwd", "models/evil/passwd")
if not os.path.islink("models/hop"):
    os.symlink("/etc", "models/hop")
os.makedirs("models/big", exist_ok=True)
open("models/big/model.onnx", "wb").write(os.urandom(2 * 1024 * 1024))
open("models/single.joblib", "wb").write(b"joblib")
print("written", sorted(os.listdir("models")))
"""
SIGNATURE = {
    "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
    "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 3]}],
}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- the checks on their own -------------------------------------------------------------
@pytest.mark.parametrize(
    "body, words",
    [
        ({"format": "keras", "source": {"kind": "job", "job": "j"}}, ["format must be one of"]),
        ({"source": {"kind": "job", "job": "j"}}, ["format is required"]),
        ({"format": "onnx", "source": {"kind": "ftp"}}, ["source.kind"]),
        ({"format": "onnx", "source": {"kind": "job", "job": "j", "path": "../x"}}, ["'..'"]),
        ({"format": "onnx", "source": {"kind": "job", "job": "j", "path": "/etc"}}, ["'..'"]),
        ({"format": "onnx", "source": {"kind": "job", "job": "j", "path": "code"}}, ["output"]),
        ({"format": "onnx", "source": {"kind": "storage", "instance": "nb"}}, ["path is req"]),
        ({"format": "image", "source": {"kind": "job", "job": "j"}}, ["image source"]),
        ({"format": "image", "source": {"kind": "image", "image": "python"}}, ["needs command"]),
        (
            {"format": "onnx", "source": {"kind": "job", "job": "j"}, "predictor": "p.py"},
            ["predictor must be 'file.py:Class'"],
        ),
        (
            {
                "format": "onnx",
                "source": {"kind": "job", "job": "j"},
                "signature": {"inputs": [{"name": "x", "datatype": "FLOAT", "shape": [1]}]},
            },
            ["datatype must be one of"],
        ),
        (
            {
                "format": "onnx",
                "source": {"kind": "job", "job": "j"},
                "signature": {"inputs": [{"name": "x", "datatype": "FP32", "shape": [0, -2]}]},
            },
            ["shape must be"],
        ),
    ],
)
def test_requests_are_checked_with_the_reason(body, words):
    with pytest.raises(model_spec.SpecError) as e:
        model_spec.check_request(body)
    for word in words:
        assert word in str(e.value), str(e.value)


def test_a_new_version_keeps_what_it_does_not_change():
    previous = {"format": "pytorch", "image": "saved:a/b:v1", "predictor": "p.py:M"}
    previous["signature"] = SIGNATURE
    spec = model_spec.check_request(
        {"source": {"kind": "storage", "instance": "nb", "path": "m"}}, previous
    )
    assert (spec["format"], spec["image"], spec["predictor"]) == (
        "pytorch",
        "saved:a/b:v1",
        "p.py:M",
    )
    assert spec["signature"] == SIGNATURE
    changed = model_spec.check_request(
        {"format": "onnx", "source": {"kind": "storage", "instance": "nb", "path": "m"}}, previous
    )
    assert (changed["image"], changed["predictor"]) == (None, "")
    assert model_spec.default_image("tensorflow") == "tensorflow"
    assert model_spec.default_image("sklearn") == "pytorch"


@pytest.mark.parametrize(
    "fmt, predictor, paths, words",
    [
        ("onnx", "", ["a.onnx", "b.onnx"], ["exactly one .onnx", "2"]),
        ("onnx", "", ["model.pt"], ["exactly one .onnx", "no"]),
        ("pytorch", "", ["weights.pth"], ["TorchScript"]),
        ("tensorflow", "", ["variables/v.index"], ["saved_model.pb"]),
        ("mindspore", "", ["net.ckpt"], [".mindir"]),
        ("sklearn", "", ["model.bin"], [".joblib"]),
        ("custom", "", ["serve.py"], ["needs a predictor"]),
        ("custom", "missing.py:M", ["serve.py"], ["'missing.py' is not among"]),
        ("sklearn", "", [], ["holds no files"]),
    ],
)
def test_the_files_a_format_needs_are_checked(fmt, predictor, paths, words):
    files = [{"path": p, "size": 1, "sha256": ""} for p in paths]
    with pytest.raises(model_spec.SpecError) as e:
        model_spec.check_files(fmt, predictor, files)
    for word in words:
        assert word in str(e.value), str(e.value)


@pytest.mark.parametrize(
    "fmt, predictor, paths",
    [
        ("onnx", "", ["sub/model.onnx", "labels.txt"]),
        ("pytorch", "", ["model.pt"]),
        ("pytorch", "p.py:Net", ["p.py", "weights.pth"]),
        ("tensorflow", "", ["saved/saved_model.pb"]),
        ("mindspore", "p.py:Net", ["p.py", "net.ckpt"]),
        ("mindspore", "", ["net.mindir"]),
        ("sklearn", "", ["model.pkl"]),
        ("custom", "serve.py:Model", ["serve.py"]),
    ],
)
def test_what_each_format_needs_is_enough(fmt, predictor, paths):
    model_spec.check_files(fmt, predictor, [{"path": p, "size": 1, "sha256": ""} for p in paths])


def test_copies_refuse_links_and_devices_and_hashes_tell_changes(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.bin").write_bytes(b"aaa")
    (src / "sub" / "b.txt").write_bytes(b"bb")
    dest = tmp_path / "dest"
    dest.mkdir()
    fd = os.open(src, os.O_RDONLY | os.O_DIRECTORY)
    try:
        files = model_files.copy_from_fd(fd, dest, limit=1024)
    finally:
        os.close(fd)
    assert files == [
        {"path": "a.bin", "size": 3, "sha256": sha(b"aaa")},
        {"path": "sub/b.txt", "size": 2, "sha256": sha(b"bb")},
    ]
    assert (dest / "sub" / "b.txt").read_bytes() == b"bb"
    assert model_files.hash_tree(dest) == files
    assert model_files.differences(dest, files) is None
    (dest / "a.bin").write_bytes(b"aab")
    assert "'a.bin' changed since registration (its contents differ)" in model_files.differences(
        dest, files
    )
    (dest / "a.bin").unlink()
    assert "'a.bin' changed since registration (it is missing)" in model_files.differences(
        dest, files
    )
    (dest / "a.bin").symlink_to("/etc/passwd")
    assert "symbolic link" in model_files.differences(dest, files)
    with pytest.raises(model_files.ModelFilesError, match="larger than"):
        model_files.hash_tree(src, limit=4)
    os.mkfifo(src / "pipe")
    with pytest.raises(model_files.ModelFilesError, match="'pipe' is a named pipe"):
        model_files.hash_tree(src)
    with pytest.raises(model_files.ModelFilesError, match="symbolic link"):
        model_files.open_below(tmp_path, Path("dest/a.bin"))


# --- the registry against a real hub -----------------------------------------------------
@pytest.fixture(scope="module")
def models_hub(tmp_path_factory, engine, test_catalog):
    """A hub of its own with a 1 MiB model limit (its models, jobs and instances are its own)."""
    with running_hub(
        tmp_path_factory.mktemp("models-hub"),
        engine.url,
        "models",
        catalog=test_catalog,
        extra_settings="[workbench.inference]\nmax_model_mib = 1\n",
    ) as h:
        yield h


@pytest.fixture(scope="module")
def mdl(models_hub):
    return models_hub.add_user("mdl")


@pytest.fixture(scope="module")
def mdl_other(models_hub):
    return models_hub.add_user("mdl-other")


@pytest.fixture(scope="module")
def trained(mdl):
    """A finished job whose output holds a model (and things a model may not hold)."""
    source = {"kind": "file", "entry": "train.py", "archive": archive({"train.py": TRAIN})}
    submit(mdl, "mdl-train", source)
    done = wait_for(mdl, "mdl", "mdl-train")
    assert done["state"] == "succeeded", done
    return done


def models_folder(hub) -> Path:
    return hub.root / "data" / "models"


def assert_nothing_left(hub, client, owner: str, name: str):
    assert name not in [m["name"] for m in client.api("GET", "models")]
    assert not (models_folder(hub) / owner / name).exists()
    staging = models_folder(hub) / ".staging"
    assert not staging.exists() or not list(staging.iterdir())


def refused(client, body, status, words):
    with pytest.raises(WorkbenchError) as e:
        client.api("POST", "models", body)
    assert e.value.status == status, e.value.message
    for word in words:
        assert word in e.value.message, e.value.message
    return e.value


def test_a_model_from_a_jobs_output_keeps_its_files_lineage_and_metrics(models_hub, mdl, trained):
    made = mdl.api(
        "POST",
        "models",
        {
            "name": "mnist",
            "description": "digits",
            "format": "onnx",
            "image": "python",
            "source": {"kind": "job", "job": "mdl-train", "path": "output/model"},
            "signature": SIGNATURE,
        },
    )
    assert (made["owner"], made["name"], made["latest"], made["description"]) == (
        "mdl",
        "mnist",
        1,
        "digits",
    )
    (v1,) = made["versions"]
    assert v1["state"] == "ready" and v1["format"] == "onnx" and v1["image"] == "python"
    assert v1["lineage"] == {"job": "mdl-train", "job_version": 1}
    assert v1["source"] == {"kind": "job", "job": "mdl-train", "version": 1, "path": "output/model"}
    assert v1["metrics"] == {"accuracy": 0.93, "loss": 0.2}
    assert v1["signature"] == SIGNATURE
    assert v1["files"] == [
        {"path": "model.onnx", "size": len(ONNX), "sha256": sha(ONNX)},
        {"path": "predictor.py", "size": len(PREDICTOR), "sha256": sha(PREDICTOR.encode())},
        {"path": "sub/vocab.txt", "size": len(VOCAB), "sha256": sha(VOCAB.encode())},
    ]
    folder = models_folder(models_hub) / "mdl" / "mnist" / "1"
    assert (folder / "model.onnx").read_bytes() == ONNX
    assert (folder / "sub" / "vocab.txt").stat().st_mode & 0o777 == 0o644
    assert mdl.api("GET", "models/mdl/mnist/versions/1/files") == v1["files"]
    assert mdl.api("GET", "models/mdl/mnist/versions/1/files?verify=1") == v1["files"]
    r = mdl.session.get(f"{mdl.api_url}/models/mdl/mnist/versions/1/files/sub/vocab.txt")
    assert r.status_code == 200 and r.content == VOCAB.encode()
    assert "mnist" in [m["name"] for m in mdl.api("GET", "models")]

    # a new version: format, signature and (same format) image are the latest one's
    v2 = mdl.api(
        "POST",
        "models/mdl/mnist/versions",
        {"source": {"kind": "job", "job": "mdl-train", "version": 1, "path": "output/model"}},
    )
    assert (v2["version"], v2["format"], v2["image"]) == (2, "onnx", "python")
    assert v2["signature"] == SIGNATURE and v2["files"] == v1["files"]
    model = mdl.api("PATCH", "models/mdl/mnist", {"description": "digits, v2"})
    assert model["description"] == "digits, v2" and model["latest"] == 2
    assert [v["version"] for v in model["versions"]] == [1, 2]
    with pytest.raises(WorkbenchError) as e:
        mdl.api("PATCH", "models/mdl/mnist", {"format": "sklearn"})
    assert e.value.status == 400 and "Only description" in e.value.message
    mdl.api("DELETE", "models/mdl/mnist/versions/2")
    assert not (models_folder(models_hub) / "mdl" / "mnist" / "2").exists()
    with pytest.raises(WorkbenchError) as e:
        mdl.api("GET", "models/mdl/mnist/versions/2")
    assert e.value.status == 404
    with pytest.raises(WorkbenchError) as e:
        mdl.api("POST", "models", {"name": "mnist", "format": "onnx", "source": v1["source"]})
    assert e.value.status == 409 and "add a version" in e.value.message
    events = {
        e["event"]
        for e in models_hub.client().api("GET", "audit?resource_type=model&limit=200")
        if e["resource_id"].startswith("mdl/mnist")
    }
    assert {"addModel", "updateModel", "deleteModel"} <= events


def test_a_file_changed_after_registration_is_refused_before_deployment(models_hub, mdl, trained):
    mdl.api(
        "POST",
        "models",
        {
            "name": "tampered",
            "format": "custom",
            "predictor": "predictor.py:Model",
            "image": "python",
            "source": {"kind": "job", "job": "mdl-train", "path": "output/model"},
        },
    )
    folder = models_folder(models_hub) / "mdl" / "tampered" / "1"
    (folder / "model.onnx").write_bytes(ONNX[:-1] + b"!")
    with pytest.raises(WorkbenchError) as e:
        mdl.api("GET", "models/mdl/tampered/versions/1/files?verify=1")
    assert e.value.status == 409, e.value.message
    assert "'model.onnx' changed since registration" in e.value.message
    assert "checksum mismatch; register a new version" in e.value.message
    (folder / "model.onnx").write_bytes(ONNX)
    assert len(mdl.api("GET", "models/mdl/tampered/versions/1/files?verify=1")) == 3
    (folder / "sub" / "vocab.txt").unlink()
    with pytest.raises(WorkbenchError) as e:
        mdl.api("GET", "models/mdl/tampered/versions/1/files?verify=1")
    assert e.value.status == 409 and "'sub/vocab.txt' changed" in e.value.message
    assert "missing" in e.value.message
    mdl.api("DELETE", "models/mdl/tampered")
    assert not (models_folder(models_hub) / "mdl" / "tampered").exists()


@pytest.mark.parametrize(
    "changes, status, words",
    [
        ({"format": "keras"}, 400, ["format must be one of"]),
        (
            {"source": {"kind": "job", "job": "mdl-train", "path": "output/model/sub"}},
            400,
            ["exactly one .onnx", "no"],
        ),
        (
            {"source": {"kind": "job", "job": "mdl-train", "path": "output/two"}},
            400,
            ["exactly one .onnx", "2"],
        ),
        (
            {"source": {"kind": "job", "job": "mdl-train", "path": "output/nope"}},
            400,
            ["has no 'output/nope'"],
        ),
        (
            {"source": {"kind": "job", "job": "mdl-train", "path": "output/../code"}},
            400,
            ["without '..'"],
        ),
        (
            {"source": {"kind": "job", "job": "mdl-train", "path": "output/linked"}},
            400,
            ["'passwd' is a symbolic link"],
        ),
        (
            {"source": {"kind": "job", "job": "mdl-train", "path": "output/big"}},
            400,
            ["larger than the 1 MiB"],
        ),
        ({"source": {"kind": "job", "job": "mdl-train", "version": 7}}, 400, ["no version 7"]),
        ({"source": {"kind": "job", "job": "nope"}}, 400, ["no job 'nope'"]),
        (
            {"source": {"kind": "job", "job": "mdl-train", "owner": "mdl-other"}},
            403,
            ["your own jobs"],
        ),
        ({"image": "nope"}, 400, ["nope"]),
        ({"image": "saved:mdl-other/secret:v1"}, 400, ["Unknown saved image"]),
        ({"name": "Bad Name"}, 400, ["Invalid model name"]),
        ({"workspace": "nowhere"}, 400, ["not a member of workspace 'nowhere'"]),
        ({"format": "custom"}, 400, ["needs a predictor"]),
        ({"colour": "red"}, 400, ["not colour"]),
        (
            {"source": {"kind": "storage", "instance": "nb-nope", "path": "m"}},
            400,
            ["no instance 'nb-nope'"],
        ),
        (
            {"format": "image", "source": {"kind": "image", "image": "python"}},
            400,
            ["needs command"],
        ),
    ],
)
def test_bad_registrations_are_refused_with_the_reason_and_leave_nothing(
    models_hub, mdl, trained, changes, status, words
):
    body = {
        "name": "bad",
        "format": "onnx",
        "image": "python",
        "source": {"kind": "job", "job": "mdl-train", "path": "output/model"},
        **changes,
    }
    refused(mdl, body, status, words)
    assert_nothing_left(models_hub, mdl, "mdl", "bad")


def test_another_users_job_cannot_be_registered_and_their_models_stay_hidden(
    models_hub, mdl, mdl_other, trained
):
    body = {
        "name": "stolen",
        "format": "onnx",
        "image": "python",
        "source": {"kind": "job", "job": "mdl-train", "path": "output/model"},
    }
    refused(mdl_other, body, 400, ["You have no job 'mdl-train'"])
    assert_nothing_left(models_hub, mdl_other, "mdl-other", "stolen")
    mdl.api("POST", "models", {**body, "name": "private"})
    for method, path in (
        ("GET", "models/mdl/private"),
        ("GET", "models/mdl/private/versions/1"),
        ("GET", "models/mdl/private/versions/1/files"),
        ("GET", "models/mdl/private/versions/1/files/model.onnx"),
        ("PATCH", "models/mdl/private"),
        ("POST", "models/mdl/private/versions"),
        ("DELETE", "models/mdl/private/versions/1"),
        ("DELETE", "models/mdl/private"),
    ):
        with pytest.raises(WorkbenchError) as e:
            mdl_other.api(method, path, {} if method in ("PATCH", "POST") else None)
        assert e.value.status == 404, (method, path, e.value.message)
    assert "private" not in [m["name"] for m in mdl_other.api("GET", "models")]
    assert mdl.api("GET", "models/mdl/private")["latest"] == 1


def test_workspace_members_see_its_models_but_only_the_owner_changes_them(
    models_hub, mdl, mdl_other, trained
):
    admin = models_hub.client()
    mate = models_hub.add_user("mdl-mate")
    admin.api("POST", "workspaces", {"name": "mdl-lab", "members": ["mdl", "mdl-mate"]})
    mdl.api(
        "POST",
        "models",
        {
            "name": "shared",
            "workspace": "mdl-lab",
            "format": "image",
            "source": {"kind": "image", "image": "python", "command": "python -m server"},
            "signature": SIGNATURE,
        },
    )
    model = mate.api("GET", "models/mdl/shared")
    assert model["workspace"] == "mdl-lab" and model["versions"][0]["format"] == "image"
    assert model["versions"][0]["files"] == [] and model["versions"][0]["command"] == (
        "python -m server"
    )
    assert "shared" in [m["name"] for m in mate.api("GET", "models?workspace=mdl-lab")]
    with pytest.raises(WorkbenchError) as e:
        mate.api("DELETE", "models/mdl/shared")
    assert e.value.status == 403 and "only they and administrators" in e.value.message
    with pytest.raises(WorkbenchError) as e:
        mdl_other.api("GET", "models/mdl/shared")
    assert e.value.status == 404
    assert admin.api("GET", "models/mdl/shared")["name"] == "shared"
    assert "shared" in [m["name"] for m in admin.api("GET", "models?all=1")]


# --- copies from an instance's storage ---------------------------------------------------
@pytest.fixture(scope="module")
def stored(models_hub, mdl):
    """A running instance whose storage holds a model and things a model may not hold."""
    mdl.api(
        "POST",
        "users/mdl/instances",
        {"name": "nb", "image": "python", "flavor": "cpu.tiny", "storage_gib": 1},
    )
    deadline = time.monotonic() + 120
    while (instance := mdl.instance("nb"))["state"] != "running":
        assert time.monotonic() < deadline, instance
        time.sleep(1)
    out = run_code(mdl, instance["url"], STORAGE)
    assert out["error"] is None and "written" in out["stdout"], out
    return instance


def test_a_model_from_an_instances_storage_is_copied_by_a_container(
    models_hub, mdl, stored, engine
):
    made = mdl.api(
        "POST",
        "models",
        {
            "name": "net",
            "format": "pytorch",
            "image": "python",
            "source": {"kind": "storage", "instance": "nb", "path": "models/net"},
        },
    )
    (v1,) = made["versions"]
    assert v1["state"] == "ready" and v1["lineage"] is None and v1["metrics"] == {}
    assert v1["files"] == [
        {"path": "model.pt", "size": 1100, "sha256": sha(b"torchscript" * 100)},
        {"path": "predictor.py", "size": 18, "sha256": sha(b"class Model: pass\n")},
        {"path": "weights/w.bin", "size": 256, "sha256": sha(bytes(range(256)))},
    ]
    folder = models_folder(models_hub) / "mdl" / "net" / "1"
    assert (folder / "weights" / "w.bin").read_bytes() == bytes(range(256))
    assert (folder / "model.pt").stat().st_uid == os.geteuid()
    # one file: it becomes the model's only file
    single = mdl.api(
        "POST",
        "models/mdl/net/versions",
        {
            "format": "sklearn",
            "image": "python",
            "source": {"kind": "storage", "instance": "nb", "path": "models/single.joblib"},
        },
    )
    assert [f["path"] for f in single["files"]] == ["single.joblib"]
    assert (single["version"], single["format"], single["image"]) == (2, "sklearn", "python")
    # the copy containers are gone
    assert engine_names(engine.url, "container", models_hub.prefix + "-model-copy") == []


@pytest.mark.parametrize(
    "path, words",
    [
        ("models/evil", ["'passwd' is a symbolic link"]),
        ("models/hop/passwd", ["'models/hop'", "symbolic link"]),
        ("models/big", ["larger than the 1 MiB"]),
        ("models/nope", ["has no 'models/nope'"]),
        ("../etc", ["without '..'"]),
    ],
)
def test_bad_storage_sources_are_refused_and_leave_nothing(
    models_hub, mdl, stored, engine, path, words
):
    body = {
        "name": "bad-copy",
        "format": "onnx",
        "image": "python",
        "source": {"kind": "storage", "instance": "nb", "path": path},
    }
    refused(mdl, body, 400, words)
    assert_nothing_left(models_hub, mdl, "mdl", "bad-copy")
    assert engine_names(engine.url, "container", models_hub.prefix + "-model-copy") == []


def test_the_model_default_image_follows_its_format(models_hub, mdl, stored, engine):
    """tensorflow -> tensorflow, mindspore -> mindspore, the rest -> pytorch: refused with
    the reason where this machine has not built that image."""
    body = {
        "name": "defaults",
        "format": "sklearn",
        "source": {"kind": "storage", "instance": "nb", "path": "models/single.joblib"},
    }
    try:
        made = mdl.api("POST", "models", body)
    except WorkbenchError as e:
        assert e.status == 400 and "'pytorch'" in e.message and "not built" in e.message
        assert_nothing_left(models_hub, mdl, "mdl", "defaults")
        return
    assert made["versions"][0]["image"] == "pytorch"


def test_cleaning_removes_staging_and_the_folders_of_models_the_database_lacks(tmp_path):
    """What the registry does at its start: folders of models the database does not hold
    (a deleted user's) and staging folders a stop left go."""
    folders = model_files.ModelFolders(tmp_path / "models")
    (folders.version("gone", "m", 1)).mkdir(parents=True)
    (folders.version("kept", "m", 1)).mkdir(parents=True)
    staging = folders.staging()
    assert folders.clean({("kept", "m")}) == 1
    assert not folders.model("gone", "m").exists() and folders.model("kept", "m").exists()
    assert not staging.exists()


class _Policy:
    """The catalog as the registry sees it: every name is an image, "missing" excepted."""

    default_image = "python"

    async def prefetch(self, user, name):
        pass

    def image(self, name, user=None):
        from spawner.options import InvalidOptions

        if name == "missing":
            raise InvalidOptions(f"Unknown image {name!r}.")
        return SimpleNamespace(name=name, ref=f"localhost/{name}:1")


class _Services:
    """A service manager whose service "web" deploys version 1 of every model."""

    def __init__(self):
        self.asked = []

    async def uses_model(self, owner, name, version):
        self.asked.append((owner, name, version))
        return ["web"] if version == 1 else []


async def test_a_version_a_service_deploys_cannot_be_deleted(tmp_path):
    """The registry in-process, on a database of its own: the service manager is asked before
    a version or model goes, and a deployed one stays (409 naming the service)."""
    from hub.db import Database
    from hub.db.core import Base
    from inference_bridge.models import ModelRegistry

    db = Database(f"sqlite:///{tmp_path}/platform.sqlite")
    Base.metadata.create_all(db.engine)
    services = _Services()
    registry = ModelRegistry(
        db=db,
        hub=None,
        policy=_Policy(),
        config=SimpleNamespace(max_model_mib=1),
        folders=model_files.ModelFolders(tmp_path / "models"),
        services=lambda: services,
    )
    caller = {"name": "mdl-solo", "admin": False}
    source = {"kind": "image", "image": "server", "command": "python -m server"}
    await registry.create(caller, {"name": "served", "source": source})
    await registry.add_version(caller, "mdl-solo", "served", {"source": source})
    for delete in (
        registry.delete_version(caller, "mdl-solo", "served", 1),
        registry.delete(caller, "mdl-solo", "served"),
    ):
        with pytest.raises(APIError) as e:
            await delete
        assert e.value.code == 409 and "version 1 by web" in e.value.message
    folder, described = await registry.deploy_files("mdl-solo", "served", 1)
    assert folder.is_dir() and described["format"] == "image" and described["files"] == []
    await registry.delete_version(caller, "mdl-solo", "served", 2)
    assert ("mdl-solo", "served", 2) in services.asked
    model = await registry.get(caller, "mdl-solo", "served")
    assert [v["version"] for v in model["versions"]] == [1]
    with pytest.raises(APIError) as e:
        await registry.create(caller, {"name": "other", "source": {**source, "image": "missing"}})
    assert e.value.code == 400 and "Unknown image 'missing'" in e.value.message
    assert [m["name"] for m in await registry.list(caller)] == ["served"]
    db.dispose()
