"""TensorFlow MultiWorkerMirroredStrategy check: a tiny seeded Keras model, two epochs.

Keras 3's Model.fit does not run under MultiWorkerMirroredStrategy (keras-team/keras#20585),
so the model is trained by a custom loop: strategy.run per step, the loss summed over replicas.
"""

import json
import os

# quieter TensorFlow logs; must be set before TensorFlow is imported
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

EPOCHS = 2
BATCH_PER_REPLICA = 16
SAMPLES = 256


def is_chief(config: dict) -> bool:
    """The chief task, or worker 0 when the cluster has no chief."""
    task = config.get("task", {})
    if "chief" in config.get("cluster", {}):
        return task.get("type") == "chief"
    return task.get("index", 0) == 0


def main() -> None:
    # the strategy must exist before any other TensorFlow operation; it reads TF_CONFIG
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    config = json.loads(os.environ.get("TF_CONFIG", "{}"))
    chief = is_chief(config)
    index = config.get("task", {}).get("index", 0)
    replicas = strategy.num_replicas_in_sync
    print(f"replicas_in_sync={replicas} worker={index} chief={chief}", flush=True)

    tf.keras.utils.set_random_seed(0)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(SAMPLES, 4)).astype("float32")
    y = x.sum(axis=1, keepdims=True)
    global_batch = BATCH_PER_REPLICA * replicas
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(global_batch).with_options(options)
    batches = strategy.experimental_distribute_dataset(dataset)

    with strategy.scope():
        model = tf.keras.Sequential([tf.keras.Input(shape=(4,)), tf.keras.layers.Dense(1)])
        optimizer = tf.keras.optimizers.SGD(learning_rate=0.05)

    def step(inputs, targets):
        with tf.GradientTape() as tape:
            errors = tf.square(model(inputs, training=True) - targets)
            # averaged over the global batch: the replicas' gradients add up to the mean's
            loss = tf.reduce_sum(errors) / global_batch
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    @tf.function
    def train_step(inputs, targets):
        losses = strategy.run(step, args=(inputs, targets))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

    history = []
    for epoch in range(EPOCHS):
        total, count = 0.0, 0
        for inputs, targets in batches:
            total += float(train_step(inputs, targets))
            count += 1
        history.append(total / count)
        print(f"epoch={epoch} loss={history[-1]:.6f}", flush=True)

    output = os.environ.get("WORKBENCH_OUTPUT_DIR")
    if output and chief:
        os.makedirs(output, exist_ok=True)
        with open(os.path.join(output, "result.json"), "w") as f:
            json.dump({"replicas": replicas, "loss": history}, f)
        print(f"wrote {output}/result.json", flush=True)


if __name__ == "__main__":
    main()
