"""`python -m images.node_agent`: run the agent; `... manifests --namespace NS --image IMAGE`:
print its DaemonSet and NetworkPolicy as YAML."""

import sys


def main():
    if sys.argv[1:2] == ["manifests"]:
        from .manifests import main as manifests_main

        manifests_main(sys.argv[2:])
        return
    from .agent import main as agent_main

    agent_main()


if __name__ == "__main__":
    main()
