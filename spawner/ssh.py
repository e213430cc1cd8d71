"""What spawners give instances for SSH: the key the gateway signs in to their sshd with."""

from __future__ import annotations

from markupsafe import Markup
from traitlets import HasTraits, Unicode

from spawner.instance_keys import instance_public_key

from .templating import render_template

SSH_KEY_ENV = "WORKBENCH_SSH_AUTHORIZED_KEY"


def ssh_form_fields(ssh: dict | None) -> Markup:
    """The spawn form's SSH fields (ssh_enabled, ssh_allowlist; see options_from_form)."""
    ssh = ssh or {}
    allowlist = ssh.get("allowlist") or []
    if isinstance(allowlist, list):
        allowlist = " ".join(str(a) for a in allowlist)
    return render_template(
        __file__,
        "ssh_fields.html",
        enabled=bool(ssh.get("enabled")),
        allowlist=str(allowlist),
    )


class InstanceSSHMixin(HasTraits):
    """Pass each instance the public half of the gateway's key for it (see ssh_gateway)."""

    ssh_key_secret_file = Unicode(
        "",
        help="""File with the secret the gateway's per-instance keys derive from (made by the
        hub's configuration in the data folder). Empty: instances start no SSH server.""",
    ).tag(config=True)

    _ssh_secret: bytes | None = None

    def get_env(self):
        env = super().get_env()
        if self.ssh_key_secret_file:
            if self._ssh_secret is None:
                with open(self.ssh_key_secret_file) as f:
                    type(self)._ssh_secret = f.read().strip().encode()
            env[SSH_KEY_ENV] = instance_public_key(self._ssh_secret, self.user.name, self.name)
        return env
