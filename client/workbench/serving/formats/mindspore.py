"""MindSpore models: MindIR (mindspore.load in an nn.GraphCell), or a predictor and a checkpoint."""

from __future__ import annotations

import numpy as np

from ..files import load_class, model_file
from ..model import ServingModel


def _numpy(value):
    if isinstance(value, (list, tuple)):
        return [_numpy(v) for v in value]
    return value.asnumpy() if hasattr(value, "asnumpy") else np.asarray(value)


class MindSporeModel(ServingModel):
    """The folder's one *.mindir graph; with a predictor "file.py:Class", that nn.Cell made
    without arguments, its parameters loaded from the folder's one *.ckpt checkpoint."""

    def load_model(self):
        import mindspore as ms

        if self.spec.predictor:
            net = load_class(self.model_dir, self.spec.predictor)()
            ckpt = model_file(self.model_dir, ("*.ckpt",), "MindSpore checkpoint")
            ms.load_checkpoint(str(ckpt), net=net)
            net.set_train(False)
        else:
            path = model_file(self.model_dir, ("*.mindir",), "MindIR model", "model.mindir")
            net = ms.nn.GraphCell(ms.load(str(path)))
        self.net = net

    def infer(self, inputs: dict):
        import mindspore as ms

        return _numpy(self.net(*[ms.Tensor(np.ascontiguousarray(a)) for a in inputs.values()]))
