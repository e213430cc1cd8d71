# SSH sessions start in the work directory, as JupyterLab does: the first shell of a session
# moves there (login shells read this file; sshd points bash at it through BASH_ENV, and the
# instance's start command through ~/.bashrc, which bash reads for sshd's commands).
unset BASH_ENV
if [ -n "$SSH_CONNECTION" ] && [ -z "$WORKBENCH_SSH_SESSION" ]; then
    export WORKBENCH_SSH_SESSION=1
    if [ "$PWD" = "$HOME" ] && [ -d "${WORKBENCH_WORK_DIR:-$HOME/work}" ]; then
        cd "${WORKBENCH_WORK_DIR:-$HOME/work}" || true
    fi
fi
