"""scikit-learn models: a joblib or pickle file; predict, and predict_proba where there is one."""

from __future__ import annotations

import numpy as np
from kserve.utils.numpy_codec import from_np_dtype

from ..files import model_file
from ..model import ServingModel
from ..spec import TensorSpec


class SklearnModel(ServingModel):
    """joblib.load of model.joblib (or the one *.joblib / *.pkl / *.pickle file). Its outputs:
    "predict" and, for estimators that have it, "predict_proba". Several inputs become the
    columns of a DataFrame (for pipelines that pick columns by name)."""

    def load_model(self):
        import joblib

        patterns = ("*.joblib", "*.pkl", "*.pickle")
        path = model_file(self.model_dir, patterns, "scikit-learn model", "model.joblib")
        self.estimator = joblib.load(path)
        self.has_proba = hasattr(self.estimator, "predict_proba")

    def derive_signature(self):
        features = getattr(self.estimator, "n_features_in_", None)
        inputs = [TensorSpec("input", "FP64", (-1, int(features)))] if features else []
        classes = getattr(self.estimator, "classes_", None)
        label = from_np_dtype(np.asarray(classes).dtype) if classes is not None else "FP64"
        outputs = [TensorSpec("predict", label or "BYTES", (-1,))]
        if self.has_proba and classes is not None:
            outputs.append(TensorSpec("predict_proba", "FP64", (-1, len(classes))))
        return inputs, outputs

    def infer(self, inputs: dict):
        if len(inputs) == 1:
            x = next(iter(inputs.values()))
        else:
            import pandas as pd

            x = pd.DataFrame(
                {name: np.asarray(a).reshape(len(a), -1)[:, 0] for name, a in inputs.items()}
            )
        result = {"predict": self.estimator.predict(x)}
        wanted = [t.name for t in self.outputs]
        if self.has_proba and (not wanted or len(wanted) > 1 or "predict_proba" in wanted):
            result["predict_proba"] = self.estimator.predict_proba(x)
        return result
