"""jupyterhub_config.py: what the settings file turns into in JupyterHub's configuration."""

import runpy
from pathlib import Path

from ldapauthenticator import LDAPAuthenticator
from oauthenticator.generic import GenericOAuthenticator
from traitlets.config import Config

from hub.auth import DefaultGroupMixin

CONFIG = Path(__file__).resolve().parents[2] / "hub" / "jupyterhub_config.py"


def load(tmp_path, monkeypatch, body: str) -> Config:
    settings = tmp_path / "workbench.toml"
    # the kubernetes backend needs no container engine here
    settings.write_text(
        f'[workbench]\ndata_dir = "{tmp_path}/data"\nbackend = "kubernetes"\n{body}'
    )
    monkeypatch.setenv("WORKBENCH_CONFIG", str(settings))
    c = Config()
    runpy.run_path(str(CONFIG), init_globals={"get_config": lambda: c})
    return c


def test_native_sign_in_and_instances(tmp_path, monkeypatch):
    c = load(tmp_path, monkeypatch, 'admin_users = ["root1"]\nmax_instances_per_user = 3\n')
    assert c.JupyterHub.authenticator_class == "hub.auth.WorkbenchAuthenticator"
    assert c.Authenticator.admin_users == {"root1"}
    assert c.WorkbenchAuthenticator.open_signup is False
    assert c.JupyterHub.allow_named_servers is True
    assert c.JupyterHub.named_server_limit_per_user == 3
    assert c.JupyterHub.cleanup_servers is False
    assert c.JupyterHub.db_url == f"sqlite:///{tmp_path}/data/jupyterhub.sqlite"
    assert c.JupyterHub.spawner_class == "spawner.kubernetes.WorkbenchKubeSpawner"
    service, gateway = c.JupyterHub.services
    assert service["name"] == "workbench" and service["command"][-1] == "hub.service.app"
    assert gateway["name"] == "ssh-gateway" and gateway["command"][-1] == "ssh_gateway"
    roles = {r["name"]: r for r in c.JupyterHub.load_roles}
    assert "access:services!service=workbench" in roles["user"]["scopes"]
    assert roles["workbench-service"]["services"] == ["workbench"]
    # the platform's roles, granted through groups; admins get full access
    assert roles["workbench-full-access"]["users"] == ["root1"]
    assert roles["workbench-common-operations"]["groups"] == ["workbench-users"]
    viewer = roles["workbench-viewer"]["scopes"]
    assert "custom:workbench:instances:read" in viewer
    assert not any(s.endswith((":create", ":delete", ":save")) for s in viewer)
    assert set(c.JupyterHub.custom_scopes) >= set(viewer)


def test_oauth_by_configuration(tmp_path, monkeypatch):
    c = load(
        tmp_path,
        monkeypatch,
        'authenticator = "oauthenticator.generic.GenericOAuthenticator"\n'
        'db_url = "postgresql://wb:secret@db:5432/workbench"\n'
        "[GenericOAuthenticator]\n"
        'client_id = "workbench"\n'
        'token_url = "https://sso.example.com/token"\n',
    )
    # the configured class, with new users joining the platform's default group
    cls = c.JupyterHub.authenticator_class
    assert issubclass(cls, GenericOAuthenticator) and issubclass(cls, DefaultGroupMixin)
    # its table still configures it: traitlets applies a parent class's section
    assert cls(config=c).client_id == "workbench"
    assert c.GenericOAuthenticator.client_id == "workbench"
    assert c.GenericOAuthenticator.token_url == "https://sso.example.com/token"
    assert c.JupyterHub.db_url == "postgresql://wb:secret@db:5432/workbench"
    assert "WorkbenchAuthenticator" not in c


def test_ldap_by_configuration(tmp_path, monkeypatch):
    c = load(
        tmp_path,
        monkeypatch,
        'authenticator = "ldapauthenticator.LDAPAuthenticator"\n'
        "[LDAPAuthenticator]\n"
        'server_address = "ldap.example.com"\n'
        'bind_dn_template = ["uid={username},ou=people,dc=example,dc=com"]\n',
    )
    cls = c.JupyterHub.authenticator_class
    assert issubclass(cls, LDAPAuthenticator) and issubclass(cls, DefaultGroupMixin)
    assert cls(config=c).server_address == "ldap.example.com"
    assert c.LDAPAuthenticator.server_address == "ldap.example.com"


def test_settings_reach_the_spawner(tmp_path, monkeypatch):
    c = load(tmp_path, monkeypatch, 'default_flavor = "cpu.tiny"\nstorage_max_gib = 30\n')
    spawner = c.WorkbenchKubeSpawner
    assert spawner.default_flavor == "cpu.tiny" and spawner.storage_max_gib == 30
    assert c.Spawner.default_url == "/lab"
