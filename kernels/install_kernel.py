#!/usr/bin/env python3
"""Register one Python environment of an image as a Jupyter kernel (stdlib only).

Run inside an image at build time:
    python3 install_kernel.py --env /opt/envs/python --name python \
        --display-name "Python 3 (no engine)" [--engine pytorch]
The kernel spec goes to <prefix>/share/jupyter/kernels/<name>/ (prefix default /usr/local),
and runs the environment's own interpreter, so `import` sees exactly what that
environment holds. The environment must have ipykernel installed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def make_kernel_spec(env: str, display_name: str, engine: str = "") -> dict:
    """The kernel.json of an environment."""
    python = os.path.join(env, "bin", "python")
    return {
        "argv": [
            python,
            "-Xfrozen_modules=off",
            "-m",
            "ipykernel_launcher",
            "-f",
            "{connection_file}",
        ],
        "display_name": display_name,
        "language": "python",
        "env": {"PATH": f"{os.path.join(env, 'bin')}:/usr/local/bin:/usr/bin:/bin"},
        "metadata": {
            "debugger": True,
            "ai_workbench": {"environment": os.path.basename(env), "engine": engine},
        },
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", required=True, help="environment prefix, e.g. /opt/envs/python")
    parser.add_argument("--name", required=True, help="kernel name, e.g. python")
    parser.add_argument("--display-name", required=True)
    parser.add_argument("--engine", default="", help="AI engine of the environment, if any")
    parser.add_argument("--prefix", default="/usr/local")
    args = parser.parse_args(argv)
    python = os.path.join(args.env, "bin", "python")
    if not os.access(python, os.X_OK):
        print(
            f"error: {python} is not an interpreter; create the environment first", file=sys.stderr
        )
        return 2
    dest = os.path.join(args.prefix, "share", "jupyter", "kernels", args.name)
    os.makedirs(dest, exist_ok=True)
    with open(os.path.join(dest, "kernel.json"), "w") as f:
        json.dump(make_kernel_spec(args.env, args.display_name, args.engine), f, indent=2)
    print(f"kernel {args.name!r} ({args.display_name}) -> {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
