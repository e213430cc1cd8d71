"""TensorFlow models: a SavedModel folder and its serving_default signature."""

from __future__ import annotations

import numpy as np
from kserve.utils.numpy_codec import from_np_dtype

from ..files import model_file
from ..model import ServingModel
from ..spec import ModelLoadError, TensorSpec


def _tensor(name: str, spec) -> TensorSpec:
    shape = tuple(-1 if d is None else int(d) for d in spec.shape)
    return TensorSpec(name, from_np_dtype(np.dtype(spec.dtype.as_numpy_dtype)) or "BYTES", shape)


class TensorFlowModel(ServingModel):
    """tf.saved_model.load of the folder holding saved_model.pb (the model folder or below)."""

    def load_model(self):
        import tensorflow as tf

        pb = model_file(self.model_dir, ("saved_model.pb",), "SavedModel", "saved_model.pb")
        self.loaded = tf.saved_model.load(str(pb.parent))
        signatures = dict(self.loaded.signatures)
        if "serving_default" not in signatures:
            raise ModelLoadError(
                f"the SavedModel in {pb.parent} has no serving_default signature "
                f"(it has: {', '.join(signatures) or 'none'})"
            )
        self.fn = signatures["serving_default"]
        _, kwargs = self.fn.structured_input_signature
        self.input_specs = dict(sorted(kwargs.items()))

    def derive_signature(self):
        outputs = dict(sorted(self.fn.structured_outputs.items()))
        return (
            [_tensor(name, spec) for name, spec in self.input_specs.items()],
            [_tensor(name, spec) for name, spec in outputs.items()],
        )

    def infer(self, inputs: dict):
        import tensorflow as tf

        # the signature's names are the function's, else its inputs in order
        names = list(inputs) if set(inputs) <= set(self.input_specs) else list(self.input_specs)
        kwargs = {
            name: tf.convert_to_tensor(array, dtype=self.input_specs[name].dtype)
            for name, array in zip(names, inputs.values(), strict=False)
        }
        return {name: t.numpy() for name, t in sorted(self.fn(**kwargs).items())}
