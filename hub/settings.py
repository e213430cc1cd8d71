"""The platform's one settings file (TOML): what it holds, its defaults, and loading it."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from urllib.parse import urlparse

from traitlets import Bool, Dict, Float, Integer, List, TraitError, Unicode, default, validate
from traitlets.config import Config, Configurable

from spawner.policy_settings import InstancePolicySettings

SETTINGS_ENV = "WORKBENCH_CONFIG"
DEFAULT_SETTINGS_FILE = "workbench.toml"


class SettingsError(ValueError):
    """The settings file is missing, malformed, or sets something unknown."""


class WorkbenchSettings(InstancePolicySettings, Configurable):
    """Settings of the [workbench] table of workbench.toml.

    The instance policy's settings (image_registry, catalog_path, flavors_path, default_image,
    default_flavor, allowed_flavors, storage_*_gib, work_dir, idle_stop_*_minutes,
    max_runtime_max_hours) are inherited from spawner.policy_settings, declared once for
    this file and the spawners.
    """

    data_dir = Unicode(
        ".run",
        help="""Folder for the hub's database, cookie secret, host keys and logs.
        Relative paths are taken from the settings file's folder. Default ".run".""",
    ).tag(config=True)
    bind_url = Unicode(
        "http://127.0.0.1:8000",
        help="""Public URL the platform listens on (JupyterHub.bind_url).
        Default "http://127.0.0.1:8000".""",
    ).tag(config=True)
    subdomain_host = Unicode(
        "",
        help="""Public origin of the hub, with each user's instances served on a host of
        their own below it (JupyterHub.subdomain_host): "https://hub.example.com" puts the
        hub, its pages and the platform API on hub.example.com and alice's instances on
        alice.hub.example.com. Needs a wildcard DNS record (*.hub.example.com) and, for
        HTTPS, a wildcard certificate. Without it every instance is served from the hub's
        own origin, so a page a user serves from their instance runs with the rights of
        whoever opens it: set it wherever users do not trust each other. Default "" (one
        origin).""",
    ).tag(config=True)
    hub_port = Integer(
        8081,
        help="""Port of the hub's internal API, which instances call back to. Default 8081.""",
    ).tag(config=True)
    hub_connect_host = Unicode(
        "host.containers.internal",
        help="""Host name by which containers reach this machine (Podman writes
        host.containers.internal into each container; with Docker it is mapped to
        the host gateway). Default "host.containers.internal".""",
    ).tag(config=True)
    service_port = Integer(
        8090,
        help="""Port of the platform API service on 127.0.0.1 (reached through the
        hub's proxy at /services/workbench/). Default 8090.""",
    ).tag(config=True)
    proxy_api_port = Integer(
        8001, help="""Port of configurable-http-proxy's REST API on 127.0.0.1. Default 8001."""
    ).tag(config=True)
    db_url = Unicode(
        "",
        help="""Database URL (SQLAlchemy form). Default: SQLite in data_dir.
        PostgreSQL: "postgresql://user:password@host:5432/workbench".""",
    ).tag(config=True)
    platform_db_url = Unicode(
        "",
        help="""Database URL of the platform's own tables (keys, images, audit, quotas).
        Default: db_url when that is PostgreSQL (the tables share its database), else
        SQLite in data_dir (workbench.sqlite).""",
    ).tag(config=True)

    prices = Dict(
        value_trait=Float(),
        help="""Price of one hour of each flavor, for usage reports: an inline table from
        flavor name to price, for example cpu.small at 0.05 and gpu.t4 at 0.9. Flavors
        without a price show no cost. Default: none.""",
    ).tag(config=True)
    currency = Unicode("USD", help='Currency of prices. Default "USD".').tag(config=True)
    audit_retention_days = Float(
        7,
        help="""Days audit events are kept before they are pruned. Default 7 (as ModelArts'
        console keeps them).""",
    ).tag(config=True)

    authenticator = Unicode(
        "native",
        help="""Who can sign in. "native": local accounts with bcrypt-hashed passwords
        (sign-up needs an admin's approval). Or an authenticator class, configured in its
        own table: "oauthenticator.generic.GenericOAuthenticator" with a
        [GenericOAuthenticator] table, "ldapauthenticator.LDAPAuthenticator" with
        [LDAPAuthenticator]. Default "native".""",
    ).tag(config=True)
    admin_users = List(
        Unicode(),
        ["admin"],
        help="""Administrators. With the native authenticator the first one's account is
        created at first start, with admin_password or a random password printed once.
        Default ["admin"].""",
    ).tag(config=True)
    admin_password = Unicode(
        "",
        help="""Initial password of the first admin account (native authenticator only);
        empty (the default) makes a random one, printed once at first start.
        Also read from the WORKBENCH_ADMIN_PASSWORD environment variable.""",
    ).tag(config=True)
    password_hash_rounds = Integer(
        12,
        min=4,
        max=31,
        help="""bcrypt's cost factor for local account passwords (native authenticator): each
        step doubles the work of a sign-in and of a guess. Stored passwords move to a new cost
        at their owner's next sign-in. Keep the default (12) or raise it; lower only for test
        hubs, where every sign-in would otherwise cost a quarter second of CPU.""",
    ).tag(config=True)
    open_signup = Bool(
        False,
        help="""Let anyone who signs up use the platform at once, without approval.
        Default False: an admin approves each sign-up at /hub/authorize.""",
    ).tag(config=True)

    backend = Unicode(
        "docker",
        help="""Where instances run: "docker" (Docker Engine API: Docker or Podman on this
        machine) or "kubernetes" (KubeSpawner in the cluster the hub runs in).
        Default "docker".""",
    ).tag(config=True)
    docker_host = Unicode(
        "",
        help="""Docker Engine API URL. Default: $DOCKER_HOST, else Docker's socket, else
        Podman's service on <data_dir>/podman.sock (started if needed).""",
    ).tag(config=True)
    container_prefix = Unicode(
        "workbench",
        help="""Prefix of container and volume names. Default "workbench".""",
    ).tag(config=True)
    kubernetes_namespace = Unicode(
        "",
        help="""Namespace of instance pods and PVCs (kubernetes backend). Default: the hub's.""",
    ).tag(config=True)
    storage_fixed_size = Bool(
        True,
        help="""Give each new instance storage of exactly its size (docker backend on
        Podman): a file system in a sparse file of that size, which Podman mounts, so `df`
        shows it and writes past it fail with "No space left on device". Files are kept in
        <data_dir>/storage. False, or Docker, or an engine on another machine: the size is
        only recorded and instances' files share the host's disk (the API and the panel say
        so). Instances made before keep the storage they have. Default True.""",
    ).tag(config=True)
    storage_class = Unicode(
        "",
        help="""StorageClass of instance PVCs (kubernetes backend). Default: the cluster's.""",
    ).tag(config=True)

    ssh_host = Unicode(
        "0.0.0.0",
        help="""Address the SSH gateway listens on. Default "0.0.0.0" (every interface).""",
    ).tag(config=True)
    ssh_port = Integer(
        2222,
        help="""Port of the SSH gateway: one port for every instance, reached as
        ssh -p <port> <user>.<instance>@<ssh_public_host>. Default 2222.""",
    ).tag(config=True)
    ssh_public_host = Unicode(
        "",
        help="""Host name users connect to, shown in the SSH commands and config blocks the
        platform prints. Default: the host of bind_url.""",
    ).tag(config=True)
    ssh_activity_seconds = Float(
        60,
        help="""Seconds between the SSH gateway's activity reports to the hub for instances
        with an open SSH connection (their last_activity moves, so they do not stop as
        idle). Default 60.""",
    ).tag(config=True)
    ssh_recheck_seconds = Float(
        5,
        min=0.5,
        help="""Seconds between the SSH gateway's re-checks of every open SSH connection (key
        still registered, SSH still on, address still allowed, user still there); a
        connection whose access is gone closes within this time. New channels on an open
        connection are checked when they open. Default 5.""",
    ).tag(config=True)
    ssh_max_auth_attempts = Integer(
        6,
        min=1,
        help="""Keys one SSH connection may offer before the gateway disconnects it, as
        OpenSSH's MaxAuthTries. Default 6.""",
    ).tag(config=True)

    max_instances_per_user = Integer(
        10, help="Instances one user may have (0: no limit). Default 10."
    ).tag(config=True)
    quota_running_instances = Integer(
        0, help="Instances one user may run at once (0: no limit). Default 0."
    ).tag(config=True)
    quota_running_jobs = Integer(
        0,
        help="""Training jobs one user may run at once (0: no limit); more wait in the queue.
        Default 0.""",
    ).tag(config=True)
    quota_vcpus = Float(
        0, help="vCPUs one user's running instances may use together (0: no limit). Default 0."
    ).tag(config=True)
    quota_memory_gib = Float(
        0, help="Memory one user's running instances may use together, GiB (0: no limit)."
    ).tag(config=True)
    quota_gpus = Integer(
        0, help="GPUs one user's running instances may use together (0: no limit). Default 0."
    ).tag(config=True)
    quota_storage_gib = Integer(
        0, help="Storage of all of one user's instances, GiB (0: no limit). Default 0."
    ).tag(config=True)
    start_timeout = Integer(
        120, help="Seconds an instance may take to start before it is failed. Default 120."
    ).tag(config=True)
    stop_timeout = Float(
        10, help="Seconds an instance gets to shut down before it is killed. Default 10."
    ).tag(config=True)
    lifecycle_interval_seconds = Float(
        30,
        help="""Seconds between the platform's checks for instances to stop (idle or past
        their fixed run time) or to restart (crashed). Default 30.""",
    ).tag(config=True)
    activity_report_seconds = Integer(
        60,
        help="""Seconds between an instance's activity reports to the hub
        (jupyterhub-singleuser's JUPYTERHUB_ACTIVITY_INTERVAL). An idle stop waits this long
        past the deadline for a late report. Default 60.""",
    ).tag(config=True)
    poll_interval = Integer(
        10,
        help="""Seconds between the hub's checks that each instance's container still runs
        (Spawner.poll_interval); a crash is noticed within this time. Default 10.""",
    ).tag(config=True)
    restart_max_attempts = Integer(
        3,
        help="""Automatic restarts of an instance whose container dies unexpectedly (killed,
        out of memory, engine restart) before it is left stopped (0: never restart).
        Default 3.""",
    ).tag(config=True)
    restart_backoff_seconds = Float(
        5,
        help="""Seconds before the first automatic restart of a crashed instance; doubled
        for each further attempt. Default 5.""",
    ).tag(config=True)

    saved_images_max_count = Integer(
        20,
        help="""Saved images one user may have (saving ones included; 0: no limit).
        A save beyond it is refused before it starts. Default 20.""",
    ).tag(config=True)
    saved_images_max_gib = Float(
        50,
        help="""Disk one user's saved images may take, GiB: the sum of what each adds to
        its preset image (0: no limit). A save is refused once it is reached. Default 50.""",
    ).tag(config=True)
    image_transfer_threads = Integer(
        4,
        help="""Image saves, pushes and pulls the platform service runs at once (each holds a
        thread for as long as it takes); more wait their turn, while every other request is
        answered from threads of its own. Default 4.""",
    ).tag(config=True)
    image_transfers_per_user = Integer(
        2,
        help="""Image saves, pushes and pulls one user may have under way at once (0: no
        limit); one more is refused (HTTP 429) until one ends. Default 2.""",
    ).tag(config=True)
    image_transfer_timeout_seconds = Integer(
        3600,
        help="""Seconds a commit, push or pull may wait on the engine before it fails.
        Quick engine calls (inspect, tag, remove) fail after 60 s. Default 3600.""",
    ).tag(config=True)
    registry_url = Unicode(
        "",
        help="""Registry that saved images are pushed to and pulled from, host[:port],
        for example "registry.example.com" or "127.0.0.1:5000". Default "": none.""",
    ).tag(config=True)
    registry_username = Unicode(
        "", help="""User name for registry_url; empty (the default): no credentials."""
    ).tag(config=True)
    registry_password = Unicode(
        "", help="""Password or token for registry_username. Default ""."""
    ).tag(config=True)
    registry_insecure = Bool(
        False,
        help="""Talk to registry_url over plain HTTP / without verifying its certificate
        (a registry on loopback or a lab network). Default False.""",
    ).tag(config=True)
    save_agent_token = Unicode(
        "",
        help="""Shared secret of the save node agent (kubernetes backend): the token in the
        agent's Secret (see images/node_agent/). Empty: saving instances answers 501 on
        Kubernetes. Default "".""",
    ).tag(config=True)
    save_agent_namespace = Unicode(
        "",
        help="""Namespace of the save node agent's DaemonSet. Default: kubernetes_namespace.""",
    ).tag(config=True)
    save_agent_port = Integer(
        8765, help="""Port the save node agent listens on in its pods. Default 8765."""
    ).tag(config=True)

    base_dir = Unicode(help="Folder relative paths are resolved against (the settings file's).")
    features = Dict(
        help="Each feature's own settings ([workbench.<feature>] tables), by feature name."
    )

    def feature(self, name: str):
        """A feature's settings object (its declared Configurable), from [workbench.<name>]."""
        if name not in self.features:
            self.features = {**self.features, **load_feature_settings({})}
        return self.features[name]

    @default("base_dir")
    def _default_base_dir(self):
        return default_base_dir()

    @validate("subdomain_host")
    def _valid_subdomain_host(self, proposal):
        value = proposal.value.strip().rstrip("/")
        if not value:
            return ""
        url = urlparse(value)
        if url.scheme not in ("http", "https") or not url.hostname or url.path:
            raise TraitError(
                f"subdomain_host must be an origin such as https://hub.example.com "
                f"(scheme, host, optional port, no path), not {proposal.value!r}"
            )
        return value

    @validate("backend")
    def _valid_backend(self, proposal):
        if proposal.value not in ("docker", "kubernetes"):
            raise TraitError(f'backend must be "docker" or "kubernetes", not {proposal.value!r}')
        return proposal.value

    # --- what every instance gets to reach package mirrors (spawner/instance_network.py) ---
    instance_ca_bundle = Unicode(
        "auto",
        help="""PEM file of the certificate authorities instances trust, put in place of the
        image's system store and named to pip, requests, conda, npm, curl and git. "auto"
        (the default): the host's own bundle, so instances trust what the host trusts (a
        TLS-inspecting proxy's CA among them); "": the image's own store.""",
    ).tag(config=True)
    instance_extra_ca_certs = List(
        Unicode(),
        help="""More PEM files of CAs instances trust, added to instance_ca_bundle (your
        company's CA, a private registry's). Default [].""",
    ).tag(config=True)
    instance_pip_index_url = Unicode(
        "auto",
        help="""pip's index URL in instances (PIP_INDEX_URL). "auto" (the default): the
        host's pip configuration's index-url, if any; "": pip's default (PyPI).""",
    ).tag(config=True)
    instance_pip_extra_index_urls = List(
        Unicode(),
        ["auto"],
        help="""pip's extra index URLs in instances. ["auto"] (the default): the host's
        pip configuration's http(s) extra-index-url entries (file:// ones mean nothing in a
        container); [] for none.""",
    ).tag(config=True)
    instance_pip_trusted_hosts = List(
        Unicode(),
        ["auto"],
        help="""Hosts pip in instances trusts without TLS checks. ["auto"] (the default):
        the host's pip configuration's trusted-host entries.""",
    ).tag(config=True)
    instance_conda_channels = List(
        Unicode(),
        help="""conda channels of instances (CONDA_CHANNELS), e.g. a mirror's
        ["https://mirror.example.com/conda-forge"]. Default []: conda's own.""",
    ).tag(config=True)
    instance_npm_registry = Unicode(
        "",
        help="""npm registry of instances (NPM_CONFIG_REGISTRY). Default "": npm's own.""",
    ).tag(config=True)
    instance_apt_mirror = Unicode(
        "",
        help="""Debian mirror URL written as the instances' /etc/apt/sources.list, e.g.
        "http://mirror.example.com/debian". Default "": the image's own.""",
    ).tag(config=True)
    instance_http_proxy = Unicode(
        "auto",
        help="""http_proxy of instances. "auto" (the default): the hub's own $http_proxy
        (or $HTTP_PROXY); "": none.""",
    ).tag(config=True)
    instance_https_proxy = Unicode(
        "auto",
        help="""https_proxy of instances. "auto" (the default): the hub's own $https_proxy
        (or $HTTPS_PROXY); "": none.""",
    ).tag(config=True)
    instance_no_proxy = Unicode(
        "auto",
        help="""no_proxy of instances (comma-separated hosts). "auto" (the default): the
        hub's own $no_proxy. The hub's host (hub_connect_host) is always added, so instances
        reach the hub and the platform API directly.""",
    ).tag(config=True)

    def instance_network(self):
        """What instances get from the settings above, "auto" read off this host."""
        from spawner.instance_network import (
            host_ca_bundle,
            host_pip_config,
            make_instance_network,
            reachable_urls,
        )

        pip = host_pip_config()

        def auto(value, host_value):
            return host_value if value == "auto" else value

        def auto_list(values, host_values):
            return host_values if values == ["auto"] else [v for v in values if v != "auto"]

        def from_env(name):
            return os.environ.get(name) or os.environ.get(name.upper()) or ""

        ca_bundle = auto(self.instance_ca_bundle, pip.get("cert") or host_ca_bundle())
        extra = [str(self.path(p)) for p in self.instance_extra_ca_certs]
        index = auto(self.instance_pip_index_url, pip.get("index-url", ""))
        return make_instance_network(
            ca_bundle=str(self.path(ca_bundle)) if ca_bundle else "",
            extra_ca_certs=extra,
            pip_index_url=index if urlparse(index).scheme in ("http", "https") else "",
            pip_extra_index_urls=auto_list(
                self.instance_pip_extra_index_urls,
                reachable_urls(pip.get("extra-index-url", "")),
            ),
            pip_trusted_hosts=auto_list(
                self.instance_pip_trusted_hosts, pip.get("trusted-host", "").split()
            ),
            conda_channels=list(self.instance_conda_channels),
            npm_registry=self.instance_npm_registry,
            apt_mirror=self.instance_apt_mirror,
            proxies={
                "http_proxy": auto(self.instance_http_proxy, from_env("http_proxy")),
                "https_proxy": auto(self.instance_https_proxy, from_env("https_proxy")),
                "no_proxy": auto(self.instance_no_proxy, from_env("no_proxy")),
            },
            always_direct=[self.hub_connect_host],
        )

    def path(self, value: str) -> Path:
        """A settings path made absolute against base_dir."""
        p = Path(os.path.expanduser(value))
        return p if p.is_absolute() else Path(self.base_dir) / p

    def default_quota(self) -> dict:
        """Every user's quota unless an administrator sets theirs (features.quotas.store.KEYS)."""
        return {
            "instances": self.max_instances_per_user,
            "running_instances": self.quota_running_instances,
            "running_jobs": self.quota_running_jobs,
            "vcpus": self.quota_vcpus,
            "memory_gib": self.quota_memory_gib,
            "gpus": self.quota_gpus,
            "storage_gib": self.quota_storage_gib,
        }

    @property
    def data_path(self) -> Path:
        return self.path(self.data_dir)

    def prepare_data_dir(self) -> Path:
        """Create the data folder readable by its owner only (0700), whatever the umask.

        It holds password and token hashes (the SQLite databases), the cookie secret and the
        SSH gateway's secrets; the databases are made 0600 before anything opens them
        (SQLite gives its journals the database's mode).
        """
        data = self.data_path
        data.mkdir(parents=True, exist_ok=True, mode=0o700)
        data.chmod(0o700)
        for name in ("jupyterhub.sqlite", "workbench.sqlite") if not self.db_url else ():
            path = data / name
            if path.exists():
                path.chmod(0o600)
            else:
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        return data

    @property
    def effective_db_url(self) -> str:
        return self.db_url or f"sqlite:///{self.data_path / 'jupyterhub.sqlite'}"

    @property
    def podman_socket(self) -> str:
        return str(self.data_path / "podman.sock")

    @property
    def initial_admin_password(self) -> str:
        return os.environ.get("WORKBENCH_ADMIN_PASSWORD") or self.admin_password

    def engine(self, start: bool = True):
        """The container engine these settings name; with start, Podman's service is started
        on <data_dir>/podman.sock if no engine answers. Raises EngineUnavailable."""
        from spawner.engine import CONTAINERS_CONF, find_engine

        self.prepare_data_dir()
        return find_engine(
            self.docker_host,
            podman_socket=self.podman_socket,
            containers_conf=CONTAINERS_CONF,
            start=start,
            log_file=str(self.data_path / "podman.log"),
        )

    def engine_url(self) -> str:
        """The engine's URL for the platform's services: the one the hub hands them
        ($WORKBENCH_ENGINE_URL), else the engine that answers. A service never starts an
        engine of its own (the hub does): where none answers yet, this is where the hub's
        would listen, and calls to it fail until it does."""
        from spawner.engine import EngineUnavailable

        url = os.environ.get("WORKBENCH_ENGINE_URL")
        if url:
            return url
        try:
            return self.engine(start=False).url
        except EngineUnavailable:
            return self.docker_host or f"unix://{self.podman_socket}"

    def spawner_config(self) -> dict:
        """The instance policy's settings (spawner.policy_settings), as the spawners take
        them: the catalog and flavors files made absolute against base_dir."""
        config = self.policy_settings()
        for name in ("catalog_path", "flavors_path"):
            config[name] = str(self.path(config[name])) if config[name] else ""
        config["allowed_flavors"] = list(config["allowed_flavors"])
        return config


# the project folder of a checkout (where `make up` runs the platform); None when installed
PROJECT_DIR = Path(__file__).resolve().parent.parent
if not (PROJECT_DIR / "pyproject.toml").exists():
    PROJECT_DIR = None


def settings_file(path: str | os.PathLike | None = None) -> Path | None:
    """The settings file to read: path, $WORKBENCH_CONFIG, else the nearest workbench.toml
    in this folder or above it, else the project folder's (so every command finds the
    platform's settings from any folder)."""
    if path:
        return Path(path)
    if os.environ.get(SETTINGS_ENV):
        return Path(os.environ[SETTINGS_ENV])
    here = Path.cwd()
    for folder in (here, *here.parents, *([PROJECT_DIR] if PROJECT_DIR else [])):
        candidate = folder / DEFAULT_SETTINGS_FILE
        if candidate.is_file():
            return candidate
    return None


def default_base_dir() -> str:
    """Where relative paths point without a settings file: the project folder of a checkout
    (its .run is the platform's data folder from any folder), else the working folder."""
    return str(PROJECT_DIR) if PROJECT_DIR else os.getcwd()


def load_settings(path: str | os.PathLike | None = None) -> tuple[WorkbenchSettings, Config]:
    """The [workbench] settings and the traitlets config of the file's other tables."""
    file = settings_file(path)
    data: dict = {}
    if file is not None:
        try:
            data = tomllib.loads(file.read_text())
        except FileNotFoundError:
            raise SettingsError(
                f"Settings file {file} does not exist. Copy hub/workbench.example.toml there."
            ) from None
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise SettingsError(f"Cannot read settings file {file}: {e}") from e
    table = data.pop("workbench", {})
    # [workbench.<feature>]: the settings table a feature declares (hub/features.py)
    known = set(WorkbenchSettings.class_traits(config=True))
    feature_tables = {
        name: table.pop(name)
        for name in list(table)
        if isinstance(table[name], dict) and name not in known
    }
    unknown = sorted(set(table) - known)
    if unknown:
        raise SettingsError(
            f"Unknown setting(s) in [workbench] of {file}: {', '.join(unknown)}. "
            "See hub/workbench.example.toml for the settings and their defaults."
        )
    base_dir = str(file.resolve().parent) if file else default_base_dir()
    try:
        settings = WorkbenchSettings(base_dir=base_dir, **table)
    except TraitError as e:
        raise SettingsError(f"Invalid setting in {file}: {e}") from e
    if (
        not 1
        <= settings.storage_min_gib
        <= settings.storage_default_gib
        <= settings.storage_max_gib
    ):
        raise SettingsError(
            f"{file}: storage settings must satisfy "
            "1 <= storage_min_gib <= storage_default_gib <= storage_max_gib"
        )
    settings.features = load_feature_settings(feature_tables, file)
    extra = Config()
    for section, values in data.items():
        if not isinstance(values, dict):
            raise SettingsError(f"{file}: top-level key {section!r} must be a [table]")
        extra[section] = Config(values)
    return settings, extra


def load_feature_settings(tables: dict, file=None, features=None) -> dict:
    """{feature: its settings object} of every feature that declares a settings table, from
    the [workbench.<feature>] tables (defaults where a table is absent)."""
    from .features import load_features

    features = load_features() if features is None else features
    declared = {f.name: f for f in features if f.settings}
    unknown = sorted(set(tables) - set(declared))
    if unknown:
        raise SettingsError(
            f"Unknown table(s) in {file}: {', '.join('[workbench.' + n + ']' for n in unknown)}. "
            f"Features with settings: {', '.join(sorted(declared)) or 'none'}."
        )
    found = {}
    for name, feature in declared.items():
        cls = feature.load("settings")
        values = tables.get(name, {})
        wrong = sorted(set(values) - set(cls.class_own_traits(config=True)))
        if wrong:
            raise SettingsError(
                f"Unknown setting(s) in [workbench.{name}] of {file}: {', '.join(wrong)}."
            )
        try:
            found[name] = cls(**values)
        except TraitError as e:
            raise SettingsError(f"Invalid setting in [workbench.{name}] of {file}: {e}") from e
    return found


def render_example() -> str:
    """The documented example settings file: every setting with its help and default."""
    import textwrap

    lines = [
        "# ai-workbench settings: copy to workbench.toml (or point $WORKBENCH_CONFIG at it).",
        "# Every setting is shown with its default; uncomment what you change.",
        "# Tables other than [workbench] are passed to JupyterHub's configuration as they are,",
        "# for example [GenericOAuthenticator] or [LDAPAuthenticator] (see `authenticator`).",
        "",
        "[workbench]",
    ]
    from traitlets import TraitType

    # definition order, which groups related settings: the table's own, then those it
    # inherits (the instance policy's, declared with the spawners)
    def config_traits(classes):
        return [
            (name, trait)
            for cls in classes
            for name, trait in vars(cls).items()
            if isinstance(trait, TraitType) and trait.metadata.get("config")
        ]

    traits = config_traits(WorkbenchSettings.__mro__)
    # then each feature's own table, [workbench.<feature>]
    from .features import load_features

    for feature in load_features():
        if feature.settings:
            cls = feature.load("settings")
            traits += [("", f"[workbench.{feature.name}]")]
            traits += config_traits([cls])
    for name, trait in traits:
        if not name:
            lines += ["", trait]
            continue
        help_text = " ".join(trait.help.split())
        lines.append("")
        lines += ["# " + line for line in textwrap.wrap(help_text, 88, break_on_hyphens=False)]
        default = trait.default()
        if isinstance(default, str):
            value = '"' + default.replace("\\", "\\\\").replace('"', '\\"') + '"'
        elif isinstance(default, bool):
            value = "true" if default else "false"
        elif isinstance(default, list):
            value = "[" + ", ".join(f'"{v}"' for v in default) + "]"
        else:
            value = repr(default)
        lines.append(f"# {name} = {value}")
    return "\n".join(lines) + "\n"
