"""Build-time check of /opt/envs/tensorflow in the CUDA image: the CUDA build, and it computes.

The build has no GPU: the gradient runs on the CPU; the check is that TensorFlow was built
with CUDA 12 and that a GPU is used when one is visible.
"""

import tensorflow as tf

build = tf.sysconfig.get_build_info()
assert build.get("is_cuda_build") and str(build["cuda_version"]).startswith("12"), build
x = tf.Variable([1.0, 2.0, 3.0])
with tf.GradientTape() as tape:
    y = tf.reduce_sum(x**2)
assert tape.gradient(y, x).numpy().tolist() == [2.0, 4.0, 6.0]
devices = tf.config.list_physical_devices()
print("tensorflow", tf.__version__, "CUDA", build["cuda_version"], devices)

# the serving runtime (`python -m workbench.serving`): kserve's server and ONNX models
from importlib.metadata import version  # noqa: E402

import kserve  # noqa: E402, F401
import onnxruntime  # noqa: E402

assert "CPUExecutionProvider" in onnxruntime.get_available_providers()
print("kserve", version("kserve"), "onnxruntime", onnxruntime.__version__, "ok")
