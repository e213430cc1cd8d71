#!/bin/sh
# Install the platform's own packages from the image's wheelhouse, in an image's last layers:
#   install_platform.sh server   the JupyterLab panel and the client into /opt/jupyter (as root)
#   install_platform.sh kernels  the client into every kernel environment, /opt/envs/* (as jovyan)
# pip check fails the build where their dependencies would break an environment.
set -eu
WHEELS=/usr/local/share/ai-workbench/wheels
install() {
    env=$1
    shift
    "$env/bin/pip" install --no-cache-dir --no-index --find-links "$WHEELS" "$@"
    "$env/bin/pip" check
    "$env/bin/python" -c "import workbench"
}
case "$1" in
    server)
        install /opt/jupyter ai-workbench-lab ai-workbench-client
        # rfc3987-syntax (with its lark grammar) comes with jsonschema's format checkers and
        # builds a grammar on import: about 1 s of every server start, through jupyter_events.
        # It checks only the "iri" formats, which no schema of the server uses ("uri" stays
        # checked). Taken out after pip check, which would ask for it back.
        /opt/jupyter/bin/pip uninstall -q -y rfc3987-syntax lark
        ;;
    kernels) for env in /opt/envs/*; do install "$env" ai-workbench-client; done ;;
    *) echo "usage: $0 server|kernels" >&2; exit 2 ;;
esac
