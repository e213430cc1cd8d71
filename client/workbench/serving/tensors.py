"""Requests to arrays and arrays to responses, v1 and v2, checked against the signature."""

from __future__ import annotations

import json
import uuid

import numpy as np
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse
from kserve.utils.numpy_codec import from_np_dtype, to_np_dtype

from .spec import TensorSpec

DEFAULT_INPUT = "input"


def check_shape(name: str, shape, expected: tuple[int, ...]):
    """InvalidInput unless shape has expected's rank and sizes (-1: any size)."""
    shape = [int(d) for d in shape]
    if len(shape) != len(expected) or any(
        e not in (-1, g) for g, e in zip(shape, expected, strict=True)
    ):
        raise InvalidInput(
            f"input {name!r}: shape {shape} does not fit the signature's {list(expected)} "
            "(-1 is any size)"
        )


def v2_inputs(request: InferRequest, specs: list[TensorSpec]) -> dict[str, np.ndarray]:
    """The arrays of a v2 request by input name, in the signature's order; InvalidInput where
    names, datatypes, shapes or data do not fit."""
    by_name = {s.name: s for s in specs}
    arrays: dict[str, np.ndarray] = {}
    for tensor in request.inputs:
        name = tensor.name
        if name in arrays:
            raise InvalidInput(f"input {name!r} is given twice")
        spec = by_name.get(name)
        if specs and spec is None:
            raise InvalidInput(
                f"unknown input {name!r}: the model takes {', '.join(by_name) or 'no inputs'}"
            )
        if spec is not None:
            if tensor.datatype != spec.datatype:
                raise InvalidInput(
                    f"input {name!r}: datatype {tensor.datatype}, "
                    f"the signature says {spec.datatype}"
                )
            check_shape(name, tensor.shape, spec.shape)
        if to_np_dtype(tensor.datatype) is None:
            raise InvalidInput(f"input {name!r}: unknown datatype {tensor.datatype}")
        try:
            arrays[name] = tensor.as_numpy()
        except (ValueError, TypeError) as e:
            raise InvalidInput(
                f"input {name!r}: its data do not fill shape {tensor.shape} "
                f"of {tensor.datatype}: {e}"
            ) from None
    missing = [s.name for s in specs if s.name not in arrays]
    if missing:
        raise InvalidInput(f"missing input(s): {', '.join(missing)}")
    return {s.name: arrays[s.name] for s in specs} if specs else arrays


def v1_inputs(body, specs: list[TensorSpec]) -> dict[str, np.ndarray]:
    """The arrays of a v1 body: {"instances": [...]} (rows; objects keyed by input name when
    the model takes several inputs) or {"inputs": ...} (columns). Without a signature, floats
    become FP32, what models usually take."""
    if isinstance(body, (bytes, str)):  # sent without Content-Type: application/json
        try:
            body = json.loads(body)
        except ValueError:
            raise InvalidInput("the request body is not JSON") from None
    if not isinstance(body, dict) or not ("instances" in body or "inputs" in body):
        raise InvalidInput('expected a JSON object {"instances": [...]}')
    names = [s.name for s in specs] or [DEFAULT_INPUT]
    if "instances" in body:
        rows = body["instances"]
        if not isinstance(rows, (list, np.ndarray)):
            raise InvalidInput('"instances" must be a list')
        if len(names) > 1 or (len(rows) and all(isinstance(r, dict) for r in rows)):
            if not all(isinstance(r, dict) for r in rows):
                raise InvalidInput(
                    f"the model takes inputs {', '.join(names)}: each instance is an object "
                    "with one value per input"
                )
            columns = {}
            for name in names if specs else list(rows[0]):
                try:
                    columns[name] = [r[name] for r in rows]
                except KeyError:
                    raise InvalidInput(f"an instance has no value for input {name!r}") from None
        else:
            columns = {names[0]: rows}
    else:
        given = body["inputs"]
        columns = given if isinstance(given, dict) else {names[0]: given}
        unknown = set(columns) - set(names) if specs else set()
        if unknown:
            raise InvalidInput(f"unknown input(s) {', '.join(sorted(unknown))}")
    by_name = {s.name: s for s in specs}
    arrays = {}
    for name, value in columns.items():
        spec = by_name.get(name)
        try:
            array = np.asarray(value, dtype=to_np_dtype(spec.datatype) if spec else None)
        except (ValueError, TypeError) as e:
            want = f" of {spec.datatype}" if spec else ""
            raise InvalidInput(f"input {name!r}: not an array{want}: {e}") from None
        if spec is None and array.dtype == np.float64:
            array = array.astype(np.float32)
        if spec is not None:
            check_shape(name, array.shape, spec.shape)
        arrays[name] = array
    missing = [n for n in by_name if n not in arrays]
    if missing:
        raise InvalidInput(f"missing input(s): {', '.join(missing)}")
    return {n: arrays[n] for n in by_name} if specs else arrays


def name_outputs(result, specs: list[TensorSpec]) -> dict[str, np.ndarray]:
    """A model's result (an array, a sequence of arrays, or a dict of them) as arrays by output
    name: the signature's names (matched by name, else by position), else the model's own
    names, else "output" / "output_<i>". Numbers take the signature's datatype."""
    names = [s.name for s in specs]
    if isinstance(result, dict):
        if names and all(n in result for n in names):
            values = [result[n] for n in names]
        else:
            values = list(result.values())
            names = names or [str(k) for k in result]
    else:
        values = list(result) if isinstance(result, (list, tuple)) else [result]
        names = names or (
            ["output"] if len(values) == 1 else [f"output_{i}" for i in range(len(values))]
        )
    if len(values) < len(names):
        raise RuntimeError(
            f"the model gave {len(values)} output(s), the signature names {len(names)}: "
            + ", ".join(names)
        )
    outputs = {}
    declared = {s.name: s.datatype for s in specs}
    for name, value in zip(names, values[: len(names)], strict=True):
        array = np.asarray(value)
        dtype = to_np_dtype(declared.get(name, ""))
        if dtype is not None and dtype is not np.object_ and array.dtype != dtype:
            array = array.astype(dtype)
        if array.dtype.kind in "US":
            array = array.astype(np.object_)
        outputs[name] = array
    return outputs


def v1_predictions(outputs: dict[str, np.ndarray]) -> list:
    """v1 "predictions" (as TensorFlow Serving's row format): one value per instance of the
    one output, or one object per instance with a value per output."""
    if len(outputs) == 1:
        return next(iter(outputs.values())).tolist()
    sizes = {a.shape[0] if a.ndim else None for a in outputs.values()}
    if len(sizes) != 1 or None in sizes:  # outputs without a common batch axis: columns
        return {name: a.tolist() for name, a in outputs.items()}
    lists = {name: a.tolist() for name, a in outputs.items()}
    return [{name: lists[name][i] for name in lists} for i in range(sizes.pop())]


def v2_response(
    request: InferRequest, outputs: dict[str, np.ndarray], model_name: str, version: str
) -> InferResponse:
    """The v2 response with one named output per array (binary where the request asks)."""
    binary = request.use_binary_outputs
    tensors = []
    for name, array in outputs.items():
        datatype = from_np_dtype(array.dtype)
        if datatype is None:
            raise RuntimeError(f"output {name!r}: arrays of {array.dtype} have no v2 datatype")
        tensor = InferOutput(name=name, shape=list(array.shape), datatype=datatype)
        tensor.set_data_from_numpy(array, binary_data=binary)
        tensors.append(tensor)
    return InferResponse(
        response_id=request.id or str(uuid.uuid4()),
        model_name=model_name,
        model_version=version,
        infer_outputs=tensors,
        use_binary_outputs=binary,
        requested_outputs=request.request_outputs,
    )
