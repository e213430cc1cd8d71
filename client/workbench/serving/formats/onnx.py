"""ONNX models: the folder's one *.onnx file in an onnxruntime InferenceSession."""

from __future__ import annotations

from ..files import model_file
from ..model import ServingModel
from ..spec import TensorSpec

# onnxruntime's element types as v2 datatypes
DATATYPES = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}


def _tensor(arg) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in arg.shape)
    return TensorSpec(arg.name, DATATYPES.get(arg.type, "BYTES"), shape)


class OnnxModel(ServingModel):
    """An ONNX graph; the GPU's execution provider where onnxruntime has one."""

    def load_model(self):
        import onnxruntime

        path = model_file(self.model_dir, ("*.onnx",), "ONNX model", preferred="model.onnx")
        available = onnxruntime.get_available_providers()
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        self.session = onnxruntime.InferenceSession(str(path), providers=providers)
        self.input_names = [a.name for a in self.session.get_inputs()]
        self.output_names = [a.name for a in self.session.get_outputs()]

    def derive_signature(self):
        return (
            [_tensor(a) for a in self.session.get_inputs()],
            [_tensor(a) for a in self.session.get_outputs()],
        )

    def infer(self, inputs: dict):
        # the signature's names are the graph's, else its inputs in order
        names = list(inputs) if set(inputs) <= set(self.input_names) else self.input_names
        results = self.session.run(None, dict(zip(names, inputs.values(), strict=False)))
        return dict(zip(self.output_names, results, strict=True))
