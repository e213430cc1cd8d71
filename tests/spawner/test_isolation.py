"""The platform's own rules that keep Podman's isolated networks apart (real Podman networks
for which networks count; the rules as iptables-restore reads them)."""

from __future__ import annotations

import subprocess
import uuid

import docker
import pytest

from spawner.engine import podman_env
from spawner.isolation import FIRST, SECOND, isolated_bridges, ruleset


def test_traffic_between_two_bridges_is_dropped_and_within_one_is_not():
    rules = ruleset(["podman2", "podman5"]).splitlines()
    assert rules[:3] == ["*filter", f":{FIRST} - [0:0]", f":{SECOND} - [0:0]"]
    assert f"-A {FIRST} -i podman2 ! -o podman2 -j {SECOND}" in rules
    assert f"-A {FIRST} -i podman5 ! -o podman5 -j {SECOND}" in rules
    assert f"-A {SECOND} -o podman2 -j DROP" in rules
    assert f"-A {SECOND} -o podman5 -j DROP" in rules
    assert rules[-1] == "COMMIT"
    # no network: both chains emptied, nothing dropped
    assert ruleset([]).count("-A ") == 0


@pytest.fixture
def networks(engine):
    client = docker.APIClient(base_url=engine.url, timeout=60)
    made = []

    def make(labels: dict, options: dict, compat: bool = True) -> str:
        name = f"iso{uuid.uuid4().hex[:8]}"
        if compat:  # Docker's API: Podman makes its bridges isolated unless told otherwise
            client.create_network(name, driver="bridge", options=options, labels=labels)
        else:  # Podman's own command: not isolated
            subprocess.run(
                [
                    engine.cli,
                    "network",
                    "create",
                    *(f"--label={k}={v}" for k, v in labels.items()),
                    name,
                ],
                check=True,
                env=podman_env(),
            )
        made.append(name)
        response = client._get(client.base_url + f"/v4.0.0/libpod/networks/{name}/json")
        return response.json()["network_interface"]

    yield client, make
    for name in made:
        client.remove_network(name)


def test_the_platforms_networks_count_even_without_the_isolate_option(networks):
    """Podman 4.3's service forgets a network's isolate option once its last container
    stops: the platform's networks (its labels) count whatever the option says; another
    network counts only with the option."""
    client, make = networks
    ours = make({"ai-workbench.user": "alice", "ai-workbench.instance": "nb"}, {}, compat=False)
    isolated = make({}, {"isolate": "true"})
    plain = make({}, {}, compat=False)
    bridges = isolated_bridges(client)
    assert ours in bridges and isolated in bridges
    assert plain not in bridges
