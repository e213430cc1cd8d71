"""The smallest job: prints its arguments and hyperparameters, writes output/result.txt."""

import json
import os
import sys


def main() -> None:
    print(f"argv={json.dumps(sys.argv[1:])}", flush=True)
    hyperparameters = json.loads(os.environ.get("WORKBENCH_HYPERPARAMETERS") or "{}")
    print(f"hyperparameters={json.dumps(hyperparameters, sort_keys=True)}", flush=True)
    rank = os.environ.get("WORKBENCH_NODE_RANK", "0")
    print(f"node={rank} of {os.environ.get('WORKBENCH_NUM_NODES', '1')}", flush=True)
    output = os.environ.get("WORKBENCH_OUTPUT_DIR")
    if output:
        os.makedirs(output, exist_ok=True)
        with open(os.path.join(output, "result.txt"), "w") as f:
            arguments = json.dumps(sys.argv[1:])
            f.write(f"hello {arguments} {json.dumps(hyperparameters, sort_keys=True)}\n")
        print(f"wrote {output}/result.txt", flush=True)


if __name__ == "__main__":
    main()
