# SSH sessions start in the work directory, as JupyterLab does (login shells read this file;
# sshd points non-interactive bash at it through BASH_ENV, read once).
unset BASH_ENV
if [ -n "$SSH_CONNECTION" ] && [ "$PWD" = "$HOME" ] && [ -d "${WORKBENCH_WORK_DIR:-$HOME/work}" ]; then
    cd "${WORKBENCH_WORK_DIR:-$HOME/work}" || true
fi
