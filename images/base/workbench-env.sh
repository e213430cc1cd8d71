# Environments of this instance: each /opt/envs/<name> is a Python environment and a kernel.
# Activate one in a terminal or SSH session with `workbench-env <name>`; the default is
# $WORKBENCH_DEFAULT_ENV. `workbench-env` alone lists them.
workbench-env() {
    if [ -z "$1" ]; then
        ls /opt/envs
        return 0
    fi
    if [ ! -x "/opt/envs/$1/bin/python" ]; then
        echo "workbench-env: no environment '$1' (have: $(ls /opt/envs | tr '\n' ' '))" >&2
        return 1
    fi
    export PATH="/opt/envs/$1/bin:$(echo "$PATH" | tr ':' '\n' | grep -v '^/opt/envs/' | paste -sd:)"
    # a login shell's /etc/profile resets PATH: keep the server's commands (jupyter lab, ...)
    case ":$PATH:" in *:/opt/jupyter/bin:*) ;; *) export PATH="$PATH:/opt/jupyter/bin" ;; esac
    export VIRTUAL_ENV="/opt/envs/$1"
}
workbench-env "${WORKBENCH_DEFAULT_ENV:-python}"
