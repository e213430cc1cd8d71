"""What spawners give instances for SSH: the key the gateway signs in to their sshd with."""

from __future__ import annotations

import html

from traitlets import HasTraits, Unicode

from spawner.instance_keys import instance_public_key

SSH_KEY_ENV = "WORKBENCH_SSH_AUTHORIZED_KEY"


def ssh_form_fields(ssh: dict | None) -> str:
    """The spawn form's SSH fields (ssh_enabled, ssh_allowlist; see options_from_form)."""
    ssh = ssh or {}
    checked = " checked" if ssh.get("enabled") else ""
    allowlist = ssh.get("allowlist") or []
    if isinstance(allowlist, list):
        allowlist = " ".join(str(a) for a in allowlist)
    return f"""<div class="mb-3">
    <div class="form-check">
      <input class="form-check-input" type="checkbox" id="wb-ssh-enabled" name="ssh_enabled"
        value="on"{checked}>
      <label class="form-check-label" for="wb-ssh-enabled">Enable SSH (ssh, scp, VS Code,
        PyCharm through the platform's SSH gateway, with the keys of your
        <a href="/services/workbench/keys">SSH keys page</a>)</label>
    </div>
    <label class="form-label" for="wb-ssh-allowlist">SSH allowed from (addresses or CIDRs,
      separated by spaces or commas; empty: any address)</label>
    <input class="form-control" type="text" id="wb-ssh-allowlist" name="ssh_allowlist"
      placeholder="203.0.113.0/24 198.51.100.7" value="{html.escape(str(allowlist))}">
  </div>"""


class InstanceSSHMixin(HasTraits):
    """Pass each instance the public half of the gateway's key for it (see ssh_gateway)."""

    ssh_key_secret_file = Unicode(
        "",
        config=True,
        help="""File with the secret the gateway's per-instance keys derive from (made by the
        hub's configuration in the data folder). Empty: instances start no SSH server.""",
    )

    _ssh_secret: bytes | None = None

    def get_env(self):
        env = super().get_env()
        if self.ssh_key_secret_file:
            if self._ssh_secret is None:
                with open(self.ssh_key_secret_file) as f:
                    type(self)._ssh_secret = f.read().strip().encode()
            env[SSH_KEY_ENV] = instance_public_key(self._ssh_secret, self.user.name, self.name)
        return env
