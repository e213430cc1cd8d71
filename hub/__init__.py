"""The ai-workbench control plane: hub configuration, platform API, CLI and Python client."""
