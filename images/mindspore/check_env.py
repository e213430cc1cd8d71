"""Build-time check of /opt/envs/mindspore: the engine imports and computes a gradient.

This catches what pip cannot: a missing system library (libgomp) or a NumPy its binary
was not built for (tensors then fail in NumPy conversion).
"""

import mindspore as ms
import numpy as np

ms.set_context(mode=ms.PYNATIVE_MODE)
x = ms.Tensor(np.array([1.0, 2.0, 3.0], np.float32))
assert ms.grad(lambda t: (t**2).sum())(x).asnumpy().tolist() == [2.0, 4.0, 6.0]
print("mindspore", ms.__version__, "ok")

# the serving runtime (`python -m workbench.serving`): kserve's server and ONNX models
from importlib.metadata import version  # noqa: E402

import kserve  # noqa: E402, F401
import onnxruntime  # noqa: E402

assert "CPUExecutionProvider" in onnxruntime.get_available_providers()
print("kserve", version("kserve"), "onnxruntime", onnxruntime.__version__, "ok")
