"""Fixtures of the spawner tests: the Kubernetes API double of tests/spawner/test_kubernetes.py."""

from tests.spawner.test_kubernetes import (  # noqa: F401 - fixtures, found by name
    api_client,
    kube,
    make_spawner,
    unreachable_cluster,
)
