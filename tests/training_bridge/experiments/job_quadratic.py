"""A trial's script with a known optimum: the loss falls over the steps towards
(x - 0.3)^2 + (log10(lr) + 2)^2 (+ 0.5 unless opt is "adam"), computed with PyTorch when it is
there. Best: x = 0.3, lr = 0.01, opt = "adam" (loss 0)."""

import argparse
import math
import time

from workbench.training import report_metric

try:
    import torch
except ImportError:  # the plain Python image: the same numbers without PyTorch
    torch = None

parser = argparse.ArgumentParser()
parser.add_argument("--x", type=float, default=0.0)
parser.add_argument("--lr", type=float, default=0.1)
parser.add_argument("--opt", default="sgd")
parser.add_argument("--steps", type=int, default=10)
parser.add_argument("--sleep", type=float, default=0.5)
args, _ = parser.parse_known_args()

if torch is not None:
    params = torch.tensor([args.x - 0.3, math.log10(args.lr) + 2], dtype=torch.float64)
    final = float((params**2).sum())
else:
    final = (args.x - 0.3) ** 2 + (math.log10(args.lr) + 2) ** 2
final += 0.0 if args.opt == "adam" else 0.5
for step in range(args.steps):
    report_metric("loss", final * (1 + 2.0 / (step + 1)), step=step)
    time.sleep(args.sleep)
print(f"final loss {final:.6f}")
