"""Custom models: the user's predictor class ("file.py:Class" in the model folder).

The class is written in the style of kserve.Model: `load()`, then per request
`preprocess(payload, headers)`, `predict(payload, headers)`, `postprocess(result, headers)`,
each optional but predict, each sync or async. It is made without arguments and finds its
files through `self.model_dir`. The payload is kserve's: a dict for v1 ({"instances": ...}),
an InferRequest for v2 (both checked against the signature first). predict may return what kserve
expects (a dict, an InferResponse) or just arrays (one, a list, or a dict by output name),
which become the v1 predictions or the v2 named outputs. A subclass of kserve.Model is served
as it is (made with the model's name).
"""

from __future__ import annotations

import contextvars
import inspect

from kserve import Model
from kserve.protocol.infer_type import InferRequest, InferResponse

from ..files import load_class
from ..model import ServingModel
from ..spec import ModelLoadError
from ..tensors import name_outputs, v1_inputs, v1_predictions, v2_inputs, v2_response

# the request being answered, so that postprocess knows which protocol to answer in
_request = contextvars.ContextVar("request", default=None)


def _takes_two(fn) -> bool:
    """Whether a predictor's method takes the headers too (kserve's style) or only the data."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return True
    return len(params) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in params)


class CustomModel(ServingModel):
    """Runs the user's predictor; its sync methods on the model's thread."""

    @classmethod
    def create(cls, spec, model_dir):
        if not spec.predictor:
            raise ModelLoadError('a custom model needs "predictor": "file.py:ClassName"')
        user_class = load_class(model_dir, spec.predictor)
        if issubclass(user_class, Model):
            model = user_class(spec.name)
            model.model_dir = str(model_dir)
            return model
        model = cls(spec, model_dir)
        model.user_class = user_class
        return model

    def load_model(self):
        self.user = self.user_class()
        self.user.model_dir = str(self.model_dir)
        self.user.name = self.name
        if hasattr(self.user, "load"):
            self.user.load()

    async def _call(self, method: str, payload, headers):
        fn = getattr(self.user, method)
        args = (payload, headers) if _takes_two(fn) else (payload,)
        if inspect.iscoroutinefunction(fn):
            return await fn(*args)
        return await self.run(fn, *args)

    def validate(self, payload):
        return payload  # preprocess checked the request; what it returns is the user's

    async def preprocess(self, payload, headers=None):
        _request.set(payload)
        # InvalidInput where a request does not fit the signature (other v1 bodies are the
        # predictor's to read)
        if isinstance(payload, InferRequest) and self.inputs:
            v2_inputs(payload, self.inputs)
        elif (
            isinstance(payload, dict)
            and self.inputs
            and ("instances" in payload or "inputs" in payload)
        ):
            v1_inputs(payload, self.inputs)
        if hasattr(self.user, "preprocess"):
            return await self._call("preprocess", payload, headers)
        return payload

    async def predict(self, payload, headers=None, response_headers=None):
        return await self._call("predict", payload, headers)

    async def postprocess(self, result, headers=None, response_headers=None):
        if hasattr(self.user, "postprocess"):
            result = await self._call("postprocess", result, headers)
        request = _request.get()
        if isinstance(request, InferRequest):
            if isinstance(result, InferResponse):
                return result
            outputs = name_outputs(result, self.outputs)
            return v2_response(request, outputs, self.name, self.spec.version)
        if isinstance(result, dict) and "predictions" in result:
            return result
        return {"predictions": v1_predictions(name_outputs(result, self.outputs))}
