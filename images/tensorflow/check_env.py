"""Build-time check of /opt/envs/tensorflow: the engine imports and computes a gradient."""

import tensorflow as tf

x = tf.Variable([1.0, 2.0, 3.0])
with tf.GradientTape() as tape:
    y = tf.reduce_sum(x**2)
assert tape.gradient(y, x).numpy().tolist() == [2.0, 4.0, 6.0]
print("tensorflow", tf.__version__, "ok")

# the serving runtime (`python -m workbench.serving`): kserve's server and ONNX models
from importlib.metadata import version  # noqa: E402

import kserve  # noqa: E402, F401
import onnxruntime  # noqa: E402

assert "CPUExecutionProvider" in onnxruntime.get_available_providers()
print("kserve", version("kserve"), "onnxruntime", onnxruntime.__version__, "ok")
