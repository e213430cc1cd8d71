"""A framework-free training stand-in that checkpoints its epoch counter and resumes from it.

After each epoch it writes {"next_epoch": n} to $WORKBENCH_CHECKPOINT_DIR/state.json; started again
with that file present it prints `resumed from epoch <n>` and goes on with epoch n.
"""

import argparse
import json
import os
import time


def load(path: str) -> int:
    """The next epoch to run: 0 without a checkpoint."""
    try:
        with open(path) as f:
            return int(json.load(f)["next_epoch"])
    except FileNotFoundError:
        return 0


def save(path: str, next_epoch: int) -> None:
    """Write the checkpoint atomically: a temporary file next to it, then a rename."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump({"next_epoch": next_epoch, "time": time.time()}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--sleep", type=float, default=1.0)
    # the platform appends every hyperparameter as --name value; ignore the ones not used here
    args, _ = parser.parse_known_args()

    folder = os.environ.get("WORKBENCH_CHECKPOINT_DIR") or os.getcwd()
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "state.json")
    start = load(path)
    if start:
        print(f"resumed from epoch {start}", flush=True)
    print(f"restart={os.environ.get('WORKBENCH_RESTART', '0')} epochs={args.epochs}", flush=True)
    for epoch in range(start, args.epochs):
        time.sleep(args.sleep)
        print(f"epoch={epoch}", flush=True)
        save(path, epoch + 1)
    print("done", flush=True)


if __name__ == "__main__":
    main()
