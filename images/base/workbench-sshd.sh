#!/bin/sh
# Start command of instances: an unprivileged OpenSSH server for the platform's SSH gateway
# (when the spawner passed its key), then the given command (the Jupyter server).
#
# sshd runs as the notebook user on port $WORKBENCH_SSH_PORT (2222) and accepts only the key
# in $WORKBENCH_SSH_AUTHORIZED_KEY: the gateway's key for this instance. Sessions get the
# container's environment and start in the work directory.
if [ -n "$WORKBENCH_SSH_AUTHORIZED_KEY" ] && [ -x /usr/sbin/sshd ]; then
    dir=/tmp/workbench-sshd
    mkdir -p "$dir" && chmod 700 "$dir"
    printf '%s\n' "$WORKBENCH_SSH_AUTHORIZED_KEY" > "$dir/authorized_keys"
    [ -f "$dir/host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$dir/host_ed25519_key"
    # the container starts in the work directory
    work="${WORKBENCH_WORK_DIR:-$PWD}"
    cat > "$dir/sshd_config" <<CONFIG
Port ${WORKBENCH_SSH_PORT:-2222}
ListenAddress 0.0.0.0
HostKey $dir/host_ed25519_key
PidFile $dir/sshd.pid
AuthorizedKeysFile $dir/authorized_keys
AuthenticationMethods publickey
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitUserEnvironment no
AllowTcpForwarding yes
AllowStreamLocalForwarding yes
X11Forwarding no
PrintMotd no
AcceptEnv LANG LC_* TERM COLORTERM VSCODE_*
# non-interactive bash (ssh host CMD, rsync, VS Code's scripts) reads \$BASH_ENV first
SetEnv PATH=$PATH WORKBENCH_DEFAULT_ENV=${WORKBENCH_DEFAULT_ENV:-python} WORKBENCH_WORK_DIR=$work BASH_ENV=/etc/profile.d/workbench-ssh.sh
Subsystem sftp /usr/lib/openssh/sftp-server -d $work
CONFIG
    # bash run by sshd for a command reads ~/.bashrc instead of $BASH_ENV
    rc="$HOME/.bashrc"
    if ! grep -qs workbench-ssh.sh "$rc"; then
        { echo '. /etc/profile.d/workbench-ssh.sh'; cat "$rc" 2>/dev/null; } > "$dir/bashrc" \
            && cp "$dir/bashrc" "$rc"
    fi
    /usr/sbin/sshd -f "$dir/sshd_config" -E "$dir/sshd.log" || echo "workbench: sshd did not start" >&2
fi
exec "$@"
