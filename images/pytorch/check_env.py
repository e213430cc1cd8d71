"""Build-time check of /opt/envs/pytorch: the engine imports and computes a gradient."""

import torch

x = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
(x**2).sum().backward()
assert x.grad.tolist() == [2.0, 4.0, 6.0], x.grad
print("pytorch", torch.__version__, "ok")
