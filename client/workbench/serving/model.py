"""The kserve model every format shares: v1 and v2 requests in, named outputs out."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kserve import Model
from kserve.protocol.infer_type import InferRequest

from .spec import ModelSpec, TensorSpec
from .tensors import name_outputs, v1_inputs, v1_predictions, v2_inputs, v2_response


class ServingModel(Model):
    """A model of one format. Subclasses read the files (load_model), compute (infer: arrays by
    input name in, an array, a sequence or a dict of arrays out) and may describe the model's
    tensors (derive_signature) for a version registered without a signature."""

    def __init__(self, spec: ModelSpec, model_dir: Path):
        super().__init__(spec.name)
        self.spec = spec
        self.model_dir = Path(model_dir)
        self.inputs: list[TensorSpec] = list(spec.inputs)
        self.outputs: list[TensorSpec] = list(spec.outputs)
        # inference runs off the event loop, one call at a time, always on the same thread
        # (some frameworks keep per-thread state); health checks answer meanwhile
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"model-{spec.name}")

    @classmethod
    def create(cls, spec: ModelSpec, model_dir: Path) -> Model:
        return cls(spec, model_dir)

    # what each format provides

    def load_model(self) -> None:
        raise NotImplementedError

    def derive_signature(self) -> tuple[list[TensorSpec], list[TensorSpec]]:
        return [], []

    def infer(self, inputs: dict):
        raise NotImplementedError

    # kserve.Model

    def load(self) -> bool:
        self.load_model()
        if not (self.inputs and self.outputs):
            inputs, outputs = self.derive_signature()
            self.inputs = self.inputs or inputs
            self.outputs = self.outputs or outputs
        self.ready = True
        return self.ready

    def get_input_types(self) -> list[dict]:
        return [t.to_dict() for t in self.inputs]

    def get_output_types(self) -> list[dict]:
        return [t.to_dict() for t in self.outputs]

    async def predict(self, payload, headers=None, response_headers=None):
        if isinstance(payload, InferRequest):
            outputs = await self.compute(v2_inputs(payload, self.inputs))
            return v2_response(payload, outputs, self.name, self.spec.version)
        outputs = await self.compute(v1_inputs(payload, self.inputs))
        return {"predictions": v1_predictions(outputs)}

    async def compute(self, arrays: dict) -> dict:
        """infer() on the model's thread; its result as arrays by output name."""
        result = await self.run(self.infer, arrays)
        return name_outputs(result, self.outputs)

    async def run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
