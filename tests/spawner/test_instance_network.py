"""Instances in the network they live in: the host's CAs and pip settings, proxies, mirrors."""

from __future__ import annotations

import json
import time
from pathlib import Path

import docker
import pytest
import requests
import websocket

from spawner.instance_network import (
    APT_SOURCES,
    SYSTEM_CA_BUNDLE,
    host_pip_config,
    make_instance_network,
    reachable_urls,
    write_instance_files,
)
from tests.platform import run_code

PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def network(**overrides):
    settings = {
        "ca_bundle": "",
        "extra_ca_certs": [],
        "pip_index_url": "",
        "pip_extra_index_urls": [],
        "pip_trusted_hosts": [],
        "conda_channels": [],
        "npm_registry": "",
        "apt_mirror": "",
        "proxies": {},
        "always_direct": ["host.containers.internal"],
    }
    return make_instance_network(**{**settings, **overrides})


def test_host_pip_configuration_is_read_in_pips_order(tmp_path):
    first, second = tmp_path / "a.conf", tmp_path / "b.conf"
    first.write_text("[global]\nindex-url = https://one.example/simple\ncert = /a.pem\n")
    second.write_text(
        "[install]\nindex-url = https://two.example/simple\n"
        "extra-index-url = file:///opt/local https://extra.example/simple\n"
        "trusted-host = extra.example\n"
    )
    found = host_pip_config([first, second], environ={"PIP_CERT": "/env.pem"})
    assert found == {
        "index-url": "https://two.example/simple",
        "extra-index-url": "file:///opt/local https://extra.example/simple",
        "trusted-host": "extra.example",
        "cert": "/env.pem",
    }
    # a host's file:// index means nothing inside a container
    assert reachable_urls(found["extra-index-url"]) == ["https://extra.example/simple"]


def test_ca_bundle_and_extra_cas_become_the_instances_trust_store(tmp_path):
    bundle, company = tmp_path / "bundle.pem", tmp_path / "company.pem"
    bundle.write_text(PEM)
    company.write_text(PEM.replace("MIIB", "MIIC"))
    net = network(ca_bundle=str(bundle), extra_ca_certs=[str(company)])
    assert "MIIB" in net.files[SYSTEM_CA_BUNDLE] and "MIIC" in net.files[SYSTEM_CA_BUNDLE]
    for name in ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS"):
        assert net.environment[name] == SYSTEM_CA_BUNDLE
    mounts = write_instance_files(net, tmp_path / "files")
    (host,) = mounts
    assert mounts[host] == SYSTEM_CA_BUNDLE
    assert Path(host).read_text() == net.files[SYSTEM_CA_BUNDLE]
    assert Path(host).stat().st_mode & 0o777 == 0o644  # readable by the instance's user


def test_a_file_without_certificates_is_refused(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("not a certificate")
    with pytest.raises(ValueError, match="no PEM certificate"):
        network(ca_bundle=str(bad))


def test_mirrors_and_proxies():
    net = network(
        pip_index_url="https://pypi.example/simple",
        pip_extra_index_urls=["https://a.example/simple", "https://b.example/simple"],
        pip_trusted_hosts=["a.example"],
        conda_channels=["https://conda.example/conda-forge"],
        npm_registry="https://npm.example/",
        apt_mirror="http://apt.example/debian/",
        proxies={"https_proxy": "http://proxy:3128", "no_proxy": "intranet"},
    )
    env = net.environment
    assert env["PIP_INDEX_URL"] == "https://pypi.example/simple"
    assert env["PIP_EXTRA_INDEX_URL"] == "https://a.example/simple https://b.example/simple"
    assert env["PIP_TRUSTED_HOST"] == "a.example"
    assert env["CONDA_CHANNELS"] == "https://conda.example/conda-forge"
    assert env["NPM_CONFIG_REGISTRY"] == "https://npm.example/"
    assert "deb http://apt.example/debian bookworm main" in net.files[APT_SOURCES]
    # the hub is always reached directly, never through the proxy
    assert env["https_proxy"] == env["HTTPS_PROXY"] == "http://proxy:3128"
    assert env["no_proxy"] == env["NO_PROXY"] == "intranet,host.containers.internal"
    assert "http_proxy" not in env
    # nothing set: nothing given
    assert network().environment == {} and network().files == {}


def terminal_run(client, instance_url: str, command: str, marker: str, timeout=240) -> str:
    """Run command in a new JupyterLab terminal; its output up to marker."""
    base = client.url + instance_url.rstrip("/")
    headers = {"Authorization": f"token {client.token}"}
    r = requests.post(f"{base}/api/terminals", headers=headers, timeout=30)
    r.raise_for_status()
    name = r.json()["name"]
    ws = websocket.create_connection(
        base.replace("http://", "ws://") + f"/terminals/websocket/{name}",
        header=[f"Authorization: token {client.token}"],
        timeout=timeout,
    )
    out = ""
    try:
        ws.send(json.dumps(["stdin", f"{command}; echo {marker}-$?\r"]))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ws.settimeout(max(1, deadline - time.monotonic()))
            message = json.loads(ws.recv())
            if message[0] == "stdout":
                out += message[1]
                # the command line echoes the marker too: wait for its result
                if f"{marker}-0" in out or f"{marker}-1" in out:
                    return out
        raise TimeoutError(f"no {marker} within {timeout} s; so far:\n{out[-2000:]}")
    finally:
        ws.close()
        requests.delete(f"{base}/api/terminals/{name}", headers=headers, timeout=30)


def test_pip_install_works_in_an_instance_and_survives_a_save(hub, engine):
    """What a data scientist does first: pip install in a terminal and %pip install in a
    notebook cell, through this machine's network (a TLS-inspecting proxy whose CA only the
    host trusts). Both succeed; saved as an image, a new instance imports both without
    installing; the network's settings are not baked into the image."""
    user = hub.add_user("pipper")
    user.create_instance("net1")
    model = user.instance("net1")
    out = terminal_run(
        user, model["url"], "pip install --no-cache-dir six", "TERMINAL-DONE", timeout=300
    )
    assert "TERMINAL-DONE-0" in out, out[-2000:]
    cell = run_code(
        user,
        model["url"],
        "%pip install --no-cache-dir termcolor\nimport termcolor, six\nprint('imported')",
        timeout=300,
    )
    assert cell["error"] is None and "imported" in cell["stdout"], cell
    saved = user.save_instance("net1", "with-pkgs", "v1", wait=True)
    user.stop_instance("net1")
    config = docker.APIClient(base_url=engine.url).inspect_image(saved["image"]["ref"])["Config"]
    assert not [e for e in config.get("Env") or [] if e.startswith("PIP_CERT=") and e[9:]]
    user.create_instance("net2", image="saved:pipper/with-pkgs:v1")
    model = user.instance("net2")
    check = run_code(
        user,
        model["url"],
        "import os, six, termcolor\n"
        "print('imported', six.__name__, termcolor.__name__)\n"
        "print('cert', os.environ.get('PIP_CERT'))",
    )
    assert check["error"] is None and "imported six termcolor" in check["stdout"], check
    assert f"cert {SYSTEM_CA_BUNDLE}" in check["stdout"]
    user.stop_instance("net2")
