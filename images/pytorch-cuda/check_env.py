"""Build-time check of /opt/envs/pytorch in the CUDA image: the CUDA build, and it computes.

The build has no GPU: the gradient runs on the CPU; the check is that torch is the CUDA 13.0
build (not a +cpu wheel) and that a GPU is used when one is visible.
"""

import torch

assert torch.version.cuda and torch.version.cuda.startswith("13.0"), torch.__version__
device = "cuda" if torch.cuda.is_available() else "cpu"
x = torch.tensor([1.0, 2.0, 3.0], requires_grad=True, device=device)
(x**2).sum().backward()
assert x.grad.tolist() == [2.0, 4.0, 6.0], x.grad
print("pytorch", torch.__version__, "CUDA", torch.version.cuda, "ok on", device)

# the serving runtime (`python -m workbench.serving`): kserve's server and ONNX models
from importlib.metadata import version  # noqa: E402

import kserve  # noqa: E402, F401
import onnxruntime  # noqa: E402

assert "CPUExecutionProvider" in onnxruntime.get_available_providers()
print("kserve", version("kserve"), "onnxruntime", onnxruntime.__version__, "ok")
