"""DDP training throughput under torchrun: a small MLP trained for a fixed number of steps
after a warm-up, timed inside the script; each rank prints `rank=<r> ... steps_per_second=<x>`
(rank 0's is the figure).

bench_jobs.py runs it as a two-node job through the platform and as bare torchrun in
containers started by hand; timing inside the script leaves container start-up, the
rendezvous and the imports out of both figures.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="timed steps (default 100)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first (default 10)")
    parser.add_argument("--batch", type=int, default=64, help="samples per rank and step")
    parser.add_argument("--width", type=int, default=256, help="hidden width of the MLP")
    args = parser.parse_args()

    # one thread per process: the nodes' CPU quotas are small, and more threads than the
    # quota allows only add throttling noise to the figure
    torch.set_num_threads(1)
    dist.init_process_group(backend=os.environ.get("WORKBENCH_DIST_BACKEND", "gloo"))
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    model = DistributedDataParallel(
        nn.Sequential(
            nn.Linear(128, args.width),
            nn.ReLU(),
            nn.Linear(args.width, args.width),
            nn.ReLU(),
            nn.Linear(args.width, 10),
        )
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    generator = torch.Generator().manual_seed(rank + 1)
    data = torch.randn(args.batch, 128, generator=generator)
    target = torch.randint(0, 10, (args.batch,), generator=generator)

    def step() -> float:
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(data), target)
        loss.backward()  # DDP all-reduces the gradients here
        optimizer.step()
        return loss.item()

    for _ in range(args.warmup):
        step()
    dist.barrier()
    start = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    dist.barrier()
    elapsed = time.perf_counter() - start
    rate = args.steps / elapsed
    print(
        f"rank={rank} world_size={world} steps={args.steps} seconds={elapsed:.3f} "
        f"loss={loss:.4f} steps_per_second={rate:.3f}",
        flush=True,
    )
    # gloo's teardown can abort a rank whose peer closed its connections first ("terminate
    # called without an active exception", exit -6) after all the work is done: once every
    # rank is past the print, leave without tearing down
    dist.barrier()
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
