"""The ai-workbench panel in JupyterLab: its prebuilt lab extension and server extension."""

from .app import WorkbenchLabApp

__version__ = "0.1.0"


def _jupyter_labextension_paths():
    return [{"src": "labextension", "dest": "ai-workbench-lab"}]


def _jupyter_server_extension_points():
    return [{"module": "workbench_lab", "app": WorkbenchLabApp}]
