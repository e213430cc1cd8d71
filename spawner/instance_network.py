"""What every instance gets to reach package mirrors: CAs, pip, conda, npm, apt, proxies.

Self-hosted platforms live behind proxies, private mirrors and their own certificate
authorities. An instance inherits by default what works on the host (its CA bundle and its
pip configuration), so `pip install` in a notebook works wherever it works on the host. The
settings are given at each start (environment variables and read-only files mounted over the
image's), never baked into an image: a saved image picks up the settings of the next start.
"""

from __future__ import annotations

import configparser
import os
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

# where the image's tools look for trusted CAs (Debian's system store: OpenSSL, curl, git)
SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
APT_SOURCES = "/etc/apt/sources.list"
HOST_CA_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",  # Debian, Ubuntu
    "/etc/pki/tls/certs/ca-bundle.crt",  # Fedora, RHEL
    "/etc/ssl/cert.pem",  # Alpine, macOS
)
PROXY_VARIABLES = ("http_proxy", "https_proxy", "no_proxy")


def host_ca_bundle() -> str:
    """The host's CA bundle (what its OpenSSL trusts); empty if none is found."""
    paths = ssl.get_default_verify_paths()
    for candidate in (os.environ.get("SSL_CERT_FILE"), paths.cafile, *HOST_CA_BUNDLES):
        if candidate and Path(candidate).is_file():
            return candidate
    return ""


def pip_config_files() -> list[Path]:
    """pip's configuration files on the host, in pip's order (later ones win)."""
    if os.environ.get("PIP_CONFIG_FILE"):
        return [Path(os.environ["PIP_CONFIG_FILE"])]
    home = Path.home()
    xdg = os.environ.get("XDG_CONFIG_DIRS", "/etc/xdg").split(":")
    config_home = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
    return [
        *(Path(d) / "pip" / "pip.conf" for d in reversed(xdg)),
        Path("/etc/pip.conf"),
        home / ".pip" / "pip.conf",
        config_home / "pip" / "pip.conf",
    ]


def host_pip_config(files: list[Path] | None = None, environ=None) -> dict[str, str]:
    """The host's pip settings that matter inside an instance: index-url, extra-index-url,
    trusted-host and cert (from its configuration files, then PIP_* variables)."""
    environ = os.environ if environ is None else environ
    found: dict[str, str] = {}
    for path in pip_config_files() if files is None else files:
        parser = configparser.RawConfigParser()
        try:
            parser.read(path)
        except (OSError, configparser.Error):
            continue
        for section in ("global", "install"):
            if parser.has_section(section):
                for key in ("index-url", "extra-index-url", "trusted-host", "cert"):
                    if parser.has_option(section, key):
                        found[key] = parser.get(section, key).strip()
    for key in ("index-url", "extra-index-url", "trusted-host", "cert"):
        value = environ.get("PIP_" + key.upper().replace("-", "_"))
        if value:
            found[key] = value.strip()
    return found


def reachable_urls(value: str) -> list[str]:
    """The http(s) URLs of a whitespace-separated list: a host's file:// indexes mean
    nothing inside a container."""
    return [u for u in value.split() if urlparse(u).scheme in ("http", "https")]


@dataclass
class InstanceNetwork:
    """Environment variables and read-only files (container path: content) of every start."""

    environment: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)


def make_instance_network(
    *,
    ca_bundle: str,
    extra_ca_certs: list[str],
    pip_index_url: str,
    pip_extra_index_urls: list[str],
    pip_trusted_hosts: list[str],
    conda_channels: list[str],
    npm_registry: str,
    apt_mirror: str,
    proxies: dict[str, str],
    always_direct: list[str],
) -> InstanceNetwork:
    """What instances get, from settings already resolved ("auto" turned into the host's).

    - ca_bundle, extra_ca_certs: PEM files whose certificates instances trust, put in place of
      the image's system store and named to pip, requests, conda, npm and curl.
    - pip_*: index, extra indexes, trusted hosts (PIP_* variables).
    - conda_channels, npm_registry: CONDA_CHANNELS, NPM_CONFIG_REGISTRY.
    - apt_mirror: a Debian mirror URL written as the image's sources.list.
    - proxies: http_proxy, https_proxy, no_proxy (both spellings set); always_direct hosts are
      added to no_proxy, so the hub and the platform API are never reached through a proxy.
    """
    net = InstanceNetwork()
    env = net.environment
    pems = []
    for path in [ca_bundle, *extra_ca_certs]:
        if not path:
            continue
        text = Path(path).read_text(errors="replace").strip()
        if "BEGIN CERTIFICATE" not in text:
            raise ValueError(f"{path} holds no PEM certificate")
        pems.append(text)
    if pems:
        net.files[SYSTEM_CA_BUNDLE] = "\n".join(pems) + "\n"
        for name in (
            "PIP_CERT",
            "REQUESTS_CA_BUNDLE",
            "SSL_CERT_FILE",
            "CURL_CA_BUNDLE",
            "NODE_EXTRA_CA_CERTS",
            "CONDA_SSL_VERIFY",
            "GIT_SSL_CAINFO",
        ):
            env[name] = SYSTEM_CA_BUNDLE
    if pip_index_url:
        env["PIP_INDEX_URL"] = pip_index_url
    if pip_extra_index_urls:
        env["PIP_EXTRA_INDEX_URL"] = " ".join(pip_extra_index_urls)
    if pip_trusted_hosts:
        env["PIP_TRUSTED_HOST"] = " ".join(pip_trusted_hosts)
    if conda_channels:
        env["CONDA_CHANNELS"] = ",".join(conda_channels)
    if npm_registry:
        env["NPM_CONFIG_REGISTRY"] = npm_registry
    if apt_mirror:
        mirror = apt_mirror.rstrip("/")
        net.files[APT_SOURCES] = (
            f"deb {mirror} bookworm main\n"
            f"deb {mirror} bookworm-updates main\n"
            f"deb {mirror}-security bookworm-security main\n"
        )
    proxies = {k: v for k, v in proxies.items() if v}
    if proxies.get("http_proxy") or proxies.get("https_proxy"):
        direct = [h for h in (proxies.get("no_proxy") or "").split(",") if h.strip()]
        for host in always_direct:
            if host and host not in direct:
                direct.append(host)
        proxies["no_proxy"] = ",".join(direct)
    for name, value in proxies.items():
        env[name] = value
        env[name.upper()] = value
    return net


def write_instance_files(net: InstanceNetwork, folder: Path) -> dict[str, str]:
    """Write the files instances get into folder; {host path: container path} to mount."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    mounts = {}
    for target, content in net.files.items():
        path = folder / target.strip("/").replace("/", "--")
        tmp = path.with_suffix(".tmp")
        tmp.write_text(content)
        tmp.chmod(0o644)  # read by the instance's user through the mount
        tmp.replace(path)
        mounts[str(path)] = target
    return mounts
