"""The hub image's JupyterHub configuration: the platform's own, from the installed package."""

# The settings file ($WORKBENCH_CONFIG, /etc/workbench/workbench.toml) drives everything, as
# in a checkout: this file only checks what the image depends on (a data folder the hub can
# own; a cluster to start instances in) before loading the platform's configuration
# (hub/jupyterhub_config.py), so that `jupyterhub -f` here and `workbench up` configure the
# same hub.
import os
import sys
from pathlib import Path

from traitlets.log import get_logger

import hub
from hub.settings import SettingsError, load_settings, settings_file

# where a pod's service account is mounted (what KubeSpawner's in-cluster configuration reads)
SERVICE_ACCOUNT_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


def _check_data_folder(settings):
    """Stop with what to change when the hub cannot make and own its data folder."""
    try:
        settings.prepare_data_dir()
    except OSError as e:
        sys.exit(
            f"ai-workbench: the hub cannot use its data folder {settings.data_path} "
            f"({e.strerror}). Set data_dir in {settings_file()} to a folder on the volume "
            "mounted at /srv/workbench that the hub (uid 1000) may create, such as "
            '"/srv/workbench/data".'
        )


def _check_cluster(settings):
    """Say at start when the kubernetes backend has no cluster to start instances in."""
    in_cluster = bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and SERVICE_ACCOUNT_TOKEN.exists()
    kubeconfig = [
        Path(p).expanduser()
        for p in os.environ.get("KUBECONFIG", "~/.kube/config").split(os.pathsep)
        if p
    ]
    if settings.backend != "kubernetes" or in_cluster or any(p.is_file() for p in kubeconfig):
        return
    get_logger().warning(
        "ai-workbench: backend is kubernetes but no cluster is configured (no service account "
        "token at %s, no kubeconfig at %s): the hub, the platform API and the SSH gateway run, "
        "starting instances fails until the hub runs in a pod of the cluster or gets a "
        "kubeconfig ($KUBECONFIG)",
        SERVICE_ACCOUNT_TOKEN,
        os.pathsep.join(map(str, kubeconfig)),
    )


try:
    _settings, _ = load_settings()
except SettingsError as e:
    sys.exit(f"ai-workbench: {e}")
_check_data_folder(_settings)
_check_cluster(_settings)
load_subconfig(str(Path(hub.__file__).parent / "jupyterhub_config.py"))  # noqa: F821
