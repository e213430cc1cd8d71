"""PyTorch DDP check under torchrun: an all-reduce, then a few seeded training steps."""

import json
import os
import socket

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

STEPS = 5


def main() -> None:
    backend = os.environ.get("WORKBENCH_DIST_BACKEND", "gloo")
    dist.init_process_group(backend=backend)
    rank = dist.get_rank()
    world = dist.get_world_size()
    host = socket.gethostname()
    print(f"world_size={world} rank={rank} host={host} backend={backend}", flush=True)

    # every rank contributes rank + 1: the sum is world * (world + 1) / 2 on all of them
    value = torch.tensor([float(rank + 1)])
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    print(f"allreduce={value.item():g} rank={rank}", flush=True)

    # the same seed everywhere: identical initial weights (DDP also broadcasts rank 0's)
    torch.manual_seed(0)
    model = DistributedDataParallel(nn.Linear(4, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    # one fixed data set, each rank taking its half: the averaged gradients are the same on
    # every rank, so is the loss once it is averaged over ranks
    data = torch.randn(8 * world, 4, generator=torch.Generator().manual_seed(1))
    target = data.sum(dim=1, keepdim=True)
    shard = slice(rank * 8, (rank + 1) * 8)
    for step in range(STEPS):
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(data[shard]), target[shard])
        loss.backward()
        optimizer.step()
        mean = loss.detach().clone()
        dist.all_reduce(mean, op=dist.ReduceOp.SUM)
        print(f"step={step} loss={mean.item() / world:.6f} rank={rank}", flush=True)

    output = os.environ.get("WORKBENCH_OUTPUT_DIR")
    if output and rank == 0:
        os.makedirs(output, exist_ok=True)
        final = mean.item() / world
        summary = {"world_size": world, "allreduce": value.item(), "final_loss": final}
        with open(os.path.join(output, "result.json"), "w") as f:
            json.dump(summary, f)
        print(f"wrote {output}/result.json", flush=True)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
