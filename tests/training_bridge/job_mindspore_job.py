"""MindSpore data-parallel check on CPU (msrun, or alone): an all-reduce, a few seeded steps."""

import json
import os

import mindspore as ms
import numpy as np
from mindspore import nn, ops
from mindspore.communication import get_group_size, get_rank, init

STEPS = 5


def main() -> None:
    ms.set_context(mode=ms.PYNATIVE_MODE)
    ms.set_device("CPU")
    # msrun starts every process with MS_ROLE set; a plain `python mindspore_job.py` runs alone
    distributed = bool(os.environ.get("MS_ROLE"))
    if distributed:
        init()
        rank, world = get_rank(), get_group_size()
    else:
        rank, world = 0, 1
    print(f"world_size={world} rank={rank} distributed={distributed}", flush=True)

    if distributed:
        total = ops.AllReduce()(ms.Tensor(np.array([rank + 1.0], np.float32)))
        print(f"allreduce={float(total.asnumpy()[0]):g} rank={rank}", flush=True)

    ms.set_seed(0)
    net = nn.Dense(4, 1)
    optimizer = nn.SGD(net.trainable_params(), learning_rate=0.1)
    loss_fn = nn.MSELoss()
    # one fixed data set, each rank training on its own slice of it
    rng = np.random.default_rng(1)
    data = rng.normal(size=(8 * world, 4)).astype(np.float32)
    target = data.sum(axis=1, keepdims=True)
    x = ms.Tensor(data[rank * 8 : (rank + 1) * 8])
    y = ms.Tensor(target[rank * 8 : (rank + 1) * 8])

    def forward(inputs, labels):
        return loss_fn(net(inputs), labels)

    grad_fn = ms.value_and_grad(forward, None, optimizer.parameters)
    # averages the gradients over all ranks, so every rank takes the same step
    reducer = None
    if distributed:
        reducer = nn.DistributedGradReducer(optimizer.parameters, mean=True, degree=world)
    for step in range(STEPS):
        loss, grads = grad_fn(x, y)
        if reducer is not None:
            grads = reducer(grads)
            loss = ops.AllReduce()(loss) / world
        optimizer(grads)
        print(f"step={step} loss={float(loss.asnumpy()):.6f} rank={rank}", flush=True)

    output = os.environ.get("WORKBENCH_OUTPUT_DIR")
    if output and rank == 0:
        os.makedirs(output, exist_ok=True)
        with open(os.path.join(output, "result.json"), "w") as f:
            json.dump({"world_size": world, "final_loss": float(loss.asnumpy())}, f)
        print(f"wrote {output}/result.json", flush=True)


if __name__ == "__main__":
    main()
