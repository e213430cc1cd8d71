"""What spawners give instances for SSH: the key the gateway signs in to their sshd with."""

from __future__ import annotations

from traitlets import HasTraits, Unicode

from ssh_gateway.instance_keys import instance_public_key

SSH_KEY_ENV = "WORKBENCH_SSH_AUTHORIZED_KEY"


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
