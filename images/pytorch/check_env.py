"""Build-time check of /opt/envs/pytorch: the engine imports and computes a gradient."""

import torch

x = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
(x**2).sum().backward()
assert x.grad.tolist() == [2.0, 4.0, 6.0], x.grad
print("pytorch", torch.__version__, "ok")

# the serving runtime (`python -m workbench.serving`): kserve's server and ONNX models
from importlib.metadata import version  # noqa: E402

import kserve  # noqa: E402, F401
import onnxruntime  # noqa: E402

assert "CPUExecutionProvider" in onnxruntime.get_available_providers()
print("kserve", version("kserve"), "onnxruntime", onnxruntime.__version__, "ok")
