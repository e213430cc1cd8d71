"""Build-time check of /opt/envs/tensorflow: the engine imports and computes a gradient."""

import tensorflow as tf

x = tf.Variable([1.0, 2.0, 3.0])
with tf.GradientTape() as tape:
    y = tf.reduce_sum(x**2)
assert tape.gradient(y, x).numpy().tolist() == [2.0, 4.0, 6.0]
print("tensorflow", tf.__version__, "ok")
