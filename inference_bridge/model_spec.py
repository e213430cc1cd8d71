"""Checking a model registration: name, format, source, image, signature, predictor, files."""

from __future__ import annotations

import re
import shlex
from pathlib import PurePosixPath

from workbench.names import JOB_NAME_RE, instance_name_problem, job_name_problem

from training_bridge.files import FilesError, relative_path

# model names are DNS labels, as job names are (they name containers and routes)
MODEL_NAME_RE = JOB_NAME_RE
FORMATS = ("onnx", "pytorch", "tensorflow", "mindspore", "sklearn", "custom", "image")
SOURCE_KINDS = ("job", "storage", "image")
# the Open Inference Protocol v2's tensor datatypes
DATATYPES = (
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BYTES",
)
# the image a format is served with when the registration names none
DEFAULT_IMAGES = {"tensorflow": "tensorflow", "mindspore": "mindspore"}
DEFAULT_IMAGE = "pytorch"
# the folders of a job version a model may come from
JOB_FOLDERS = ("output", "checkpoints")
MAX_DESCRIPTION = 512
MAX_COMMAND = 4096
MAX_TENSORS = 64
MAX_DIMENSIONS = 32
TENSOR_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:/-]{0,127}$")
PREDICTOR = re.compile(r"^(?P<file>[^:]+\.py):(?P<cls>[A-Za-z_][A-Za-z0-9_]*)$")
# what a registration may send (a new version: the same without name, description, workspace)
MODEL_KEYS = ("name", "description", "workspace", "format", "source", "image", "signature")
MODEL_KEYS += ("predictor", "command")
VERSION_KEYS = ("format", "source", "image", "signature", "predictor", "command")


class SpecError(ValueError):
    """The registration cannot be accepted; the message says what to fix (an HTTP 400)."""


def check_name(name) -> str:
    if not isinstance(name, str) or not name:
        raise SpecError("A model needs a name, for example 'mnist-cnn'.")
    if not MODEL_NAME_RE.match(name):
        raise SpecError(
            f"Invalid model name {name!r}: use 1 to 32 lower-case letters, digits and '-', "
            "starting and ending with a letter or digit (for example 'mnist-cnn')."
        )
    return name


def check_description(value) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > MAX_DESCRIPTION:
        raise SpecError(f"description must be text of at most {MAX_DESCRIPTION} characters.")
    return value


def check_keys(body: dict, allowed: tuple[str, ...], what: str) -> None:
    unknown = sorted(str(k) for k in set(body) - set(allowed))
    if unknown:
        raise SpecError(f"{what} takes {', '.join(allowed)}; not {', '.join(unknown)}.")


def _path(value, what: str) -> str:
    try:
        return str(relative_path(value, what))
    except FilesError as e:
        raise SpecError(str(e)) from None


def check_source(source) -> dict:
    """The source, normalised: where the model's files come from (or its serving image)."""
    if not isinstance(source, dict):
        raise SpecError(
            'source is required: {"kind": "job", "job": "mnist", "version": 1, "path": '
            '"output/model"}, {"kind": "storage", "instance": "nb1", "path": "models/net"} '
            'or {"kind": "image", "image": "saved:you/server:v1", "command": "..."}.'
        )
    kind = source.get("kind")
    if kind not in SOURCE_KINDS:
        raise SpecError(f"source.kind must be one of {', '.join(SOURCE_KINDS)}; got {kind!r}.")
    if kind == "job":
        check_keys(source, ("kind", "job", "version", "path", "owner"), "A job source")
        problem = job_name_problem(source.get("job"))
        if problem:
            raise SpecError(f"source.job: {problem}")
        version = source.get("version")
        if version is not None and (
            isinstance(version, bool) or not isinstance(version, int) or not 1 <= version < 10**9
        ):
            raise SpecError(f"source.version must be a job version number; got {version!r}.")
        path = _path(source.get("path") or "output", "source.path")
        if PurePosixPath(path).parts[0] not in JOB_FOLDERS:
            raise SpecError(
                f"source.path {path!r} must be in the version's output or checkpoints "
                "folder, e.g. 'output/model'."
            )
        out = {"kind": "job", "job": source["job"], "version": version, "path": path}
        if source.get("owner") is not None:
            out["owner"] = source["owner"]
        return out
    if kind == "storage":
        check_keys(source, ("kind", "instance", "path"), "A storage source")
        problem = instance_name_problem(source.get("instance"))
        if problem:
            raise SpecError(f"source.instance: {problem}")
        if source.get("path") in (None, "", "."):
            raise SpecError(
                "source.path is required: the folder or file in the instance's storage, "
                "e.g. 'models/net'."
            )
        path = _path(source.get("path"), "source.path")
        return {"kind": "storage", "instance": source["instance"], "path": path}
    check_keys(source, ("kind", "image", "command"), "An image source")
    image = source.get("image")
    if not isinstance(image, str) or not image.strip():
        raise SpecError(
            "An image source needs image: a catalog image or saved:<owner>/<name>:<tag>."
        )
    return {"kind": "image", "image": image.strip(), "command": source.get("command")}


def check_command(value) -> str:
    """The serving command of an image model (text, parsed as a shell would split it)."""
    if isinstance(value, list):
        if not value or not all(isinstance(a, str) for a in value):
            raise SpecError("command must be text or a list of text.")
        value = shlex.join(value)
    if not isinstance(value, str) or not value.strip():
        raise SpecError(
            "An image model needs command: what starts its server on port 8080, e.g. "
            "'python -m my_server --port 8080'."
        )
    if len(value) > MAX_COMMAND or "\x00" in value:
        raise SpecError(f"command is longer than {MAX_COMMAND} characters.")
    try:
        shlex.split(value)
    except ValueError as e:
        raise SpecError(f"command cannot be parsed ({e}).") from None
    return value.strip()


def _tensors(value, what: str) -> list[dict]:
    if not isinstance(value, list) or len(value) > MAX_TENSORS:
        raise SpecError(
            f"signature.{what} must be a list of at most {MAX_TENSORS} tensors: "
            '[{"name": "x", "datatype": "FP32", "shape": [-1, 4]}].'
        )
    out, names = [], set()
    for i, tensor in enumerate(value):
        if not isinstance(tensor, dict):
            raise SpecError(f"signature.{what}[{i}] must be {{name, datatype, shape}}.")
        check_keys(tensor, ("name", "datatype", "shape"), f"signature.{what}[{i}]")
        name = tensor.get("name")
        if not isinstance(name, str) or not TENSOR_NAME.match(name):
            raise SpecError(
                f"signature.{what}[{i}].name {name!r}: use 1 to 128 letters, digits, "
                "'_', '.', ':', '/' and '-'."
            )
        if name in names:
            raise SpecError(f"signature.{what} names {name!r} twice.")
        names.add(name)
        datatype = tensor.get("datatype")
        if datatype not in DATATYPES:
            raise SpecError(
                f"signature.{what} {name!r}: datatype must be one of {', '.join(DATATYPES)}; "
                f"got {datatype!r}."
            )
        shape = tensor.get("shape")
        if (
            not isinstance(shape, list)
            or len(shape) > MAX_DIMENSIONS
            or not all(
                isinstance(d, int) and not isinstance(d, bool) and (d == -1 or 1 <= d < 2**31)
                for d in shape
            )
        ):
            raise SpecError(
                f"signature.{what} {name!r}: shape must be a list of at most "
                f"{MAX_DIMENSIONS} sizes, each a positive whole number or -1 (any size); "
                f"got {shape!r}."
            )
        out.append({"name": name, "datatype": datatype, "shape": list(shape)})
    return out


def check_signature(value) -> dict:
    """{"inputs": [...], "outputs": [...]} of v2 tensors ({} when not given)."""
    if value is None or value == {}:
        return {}
    if not isinstance(value, dict):
        raise SpecError('signature must be {"inputs": [...], "outputs": [...]}.')
    check_keys(value, ("inputs", "outputs"), "signature")
    return {
        "inputs": _tensors(value.get("inputs") or [], "inputs"),
        "outputs": _tensors(value.get("outputs") or [], "outputs"),
    }


def check_predictor(value) -> str:
    """'file.py:Class' (a Python file of the model and the class in it), or ''."""
    if value is None or value == "":
        return ""
    match = PREDICTOR.match(value) if isinstance(value, str) else None
    if match is None:
        raise SpecError(
            f"predictor must be 'file.py:Class', a Python file of the model's files and the "
            f"class in it, e.g. 'predictor.py:Model'; got {value!r}."
        )
    path = _path(match["file"], "predictor's file")
    return f"{path}:{match['cls']}"


def check_request(body: dict, previous: dict | None = None) -> dict:
    """What a registration asks for, checked without the platform: format, source, image
    name (None: the format's default), command, signature, predictor.

    previous: the model's latest version (for a new version): its format, signature and
    (for the same format) image, predictor and command are kept where the body says nothing.
    """
    source = check_source(body.get("source"))
    previous = previous or {}
    fmt = body.get("format")
    if fmt is None:
        fmt = "image" if source["kind"] == "image" else previous.get("format")
    if fmt is None:
        raise SpecError(f"format is required: one of {', '.join(FORMATS)}.")
    if fmt not in FORMATS:
        raise SpecError(f"format must be one of {', '.join(FORMATS)}; got {fmt!r}.")
    if (fmt == "image") != (source["kind"] == "image"):
        raise SpecError(
            "An image model comes from an image source (no files), and only it: "
            'send format "image" with {"kind": "image", ...}, or another format with a job '
            "or storage source."
        )
    same = fmt == previous.get("format")
    image = body.get("image")
    if fmt == "image":
        if image is not None and image != source["image"]:
            raise SpecError("image and source.image name different images: send one.")
        image = source["image"]
    elif image is None and same:
        image = previous.get("image")
    if image is not None and (not isinstance(image, str) or not image.strip()):
        raise SpecError("image must be an image's name (see GET /images).")
    command = ""
    if fmt == "image":
        value = source.get("command") if source.get("command") is not None else body.get("command")
        if value is None and same:
            value = previous.get("command")
        command = check_command(value)
        source["command"] = command
    elif body.get("command") not in (None, ""):
        raise SpecError("command is for image models only; the others are served by the platform.")
    predictor = body.get("predictor")
    if predictor is None and same:
        predictor = previous.get("predictor")
    predictor = check_predictor(predictor)
    if fmt == "image" and predictor:
        raise SpecError("An image model serves itself: it takes no predictor.")
    signature = body.get("signature")
    if signature is None:
        signature = previous.get("signature")
    return {
        "format": fmt,
        "source": source,
        "image": image.strip() if isinstance(image, str) else None,
        "command": command,
        "signature": check_signature(signature),
        "predictor": predictor,
    }


def default_image(fmt: str) -> str:
    return DEFAULT_IMAGES.get(fmt, DEFAULT_IMAGE)


def check_files(fmt: str, predictor: str, files: list[dict]) -> None:
    """SpecError unless the copied files hold what the format needs (and the predictor's
    file, when one is named)."""
    if fmt == "image":
        return
    paths = [f["path"] for f in files]
    if not paths:
        raise SpecError("The source holds no files: a model needs its weights.")

    def having(*suffixes: str) -> list[str]:
        return [p for p in paths if p.lower().endswith(suffixes)]

    if predictor:
        file = predictor.split(":", 1)[0]
        if file not in paths:
            raise SpecError(
                f"The predictor's file {file!r} is not among the model's files "
                f"({', '.join(sorted(paths)[:10])})."
            )
    if fmt == "onnx":
        found = having(".onnx")
        if len(found) != 1:
            what = "no" if not found else f"{len(found)} ({', '.join(sorted(found)[:5])})"
            raise SpecError(f"An onnx model needs exactly one .onnx file; the source holds {what}.")
    elif fmt == "pytorch":
        if not having(".pt") and not predictor:
            raise SpecError(
                "A pytorch model needs a TorchScript file (*.pt, saved with "
                "torch.jit.save), or a predictor ('predictor.py:Model') that loads its weights."
            )
    elif fmt == "tensorflow":
        if not [p for p in paths if PurePosixPath(p).name == "saved_model.pb"]:
            raise SpecError(
                "A tensorflow model needs a SavedModel (a saved_model.pb file, made with "
                "tf.saved_model.save or model.export)."
            )
    elif fmt == "mindspore":
        if not having(".mindir") and not (having(".ckpt") and predictor):
            raise SpecError(
                "A mindspore model needs a .mindir file (mindspore.export), or a .ckpt "
                "checkpoint with a predictor ('predictor.py:Model') that builds the network."
            )
    elif fmt == "sklearn":
        if not having(".joblib", ".pkl"):
            raise SpecError("An sklearn model needs a .joblib or .pkl file (joblib.dump).")
    elif fmt == "custom" and not predictor:
        raise SpecError(
            "A custom model needs a predictor: 'file.py:Class', a kserve.Model subclass "
            "(or a class with load() and predict()) in the model's files."
        )
