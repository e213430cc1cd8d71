"""PyTorch models: TorchScript (model.pt or the one *.pt), or a predictor class and its weights."""

from __future__ import annotations

import numpy as np

from ..files import load_class, model_file
from ..model import ServingModel


def _numpy(value):
    """A module's result (tensors, possibly in a tuple, list or dict) as numpy arrays."""
    if isinstance(value, dict):
        return {k: _numpy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_numpy(v) for v in value]
    return value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)


class TorchModel(ServingModel):
    """A TorchScript module (torch.jit.load); with a predictor "file.py:Class", that nn.Module
    made without arguments, its state_dict loaded from the folder's one *.pt / *.pth file."""

    def load_model(self):
        import torch

        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if self.spec.predictor:
            module = load_class(self.model_dir, self.spec.predictor)()
            weights = model_file(self.model_dir, ("*.pt", "*.pth"), "PyTorch weights")
            state = torch.load(weights, map_location=self.device, weights_only=True)
            module.load_state_dict(state)
            module.to(self.device)
        else:
            path = model_file(
                self.model_dir, ("*.pt", "*.pth"), "TorchScript model", preferred="model.pt"
            )
            module = torch.jit.load(str(path), map_location=self.device)
        self.module = module.eval()

    def infer(self, inputs: dict):
        import torch

        tensors = [
            torch.from_numpy(np.ascontiguousarray(a)).to(self.device) for a in inputs.values()
        ]
        with torch.inference_mode():
            return _numpy(self.module(*tensors))
