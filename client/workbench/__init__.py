"""The ai-workbench platform's Python client: async first, with a sync wrapper.

In a notebook on the platform nothing needs setting up (the instance's environment says where
the platform is and holds its token):

    import workbench
    workbench.instances.list()
    workbench.images.save("my-notebook", "bert-env", "v1", wait=True)
    job = workbench.jobs.submit("train.py", runtime="pytorch", nodes=2)
    for line in job.logs(follow=True): print(line, end="")
    model = workbench.models.create("mnist", format="onnx", source=job)
    service = model.deploy("mnist", flavor="cpu.small", replicas=(1, 2), wait=True)
    service.predict([[0.1, 0.2, 0.3, 0.4]])
    workbench.batch.run(model, inputs="my-notebook:data/batch").wait()
    pets = workbench.datasets.create("pets", "image_classification", folder="~/pets")
    path = pets.publish().local_path()
    search = workbench.search("train.py", space={"lr": "float:1e-4:1:log"}, objective="loss")
    best = search.wait(progress=True).best_trial; workbench.compare(search)
    workbench.tensorboard(search)         # in a notebook: TensorBoard over its trials' runs
    case = workbench.gallery.publish("cases/mnist", title="MNIST in 5 minutes", tags=["vision"])
    workbench.gallery.use(workbench.gallery.search("bert", kind="model")[0]["id"], name="bert")

Inside a training job, workbench.training has the helpers a script uses (checkpoints,
metrics, hyperparameters).

Elsewhere set $WORKBENCH_URL and $WORKBENCH_TOKEN, or make a client:

    client = workbench.WorkbenchClient("http://127.0.0.1:8000", token)
    async with workbench.AsyncWorkbenchClient(...) as aclient: ...
"""

from __future__ import annotations

import threading

from .client import NAMESPACES, AsyncWorkbenchClient
from .errors import WorkbenchError
from .resources.hub import HubAPI, server_path
from .sync import WorkbenchClient

__all__ = [
    "AsyncWorkbenchClient",
    "HubAPI",
    "WorkbenchClient",
    "WorkbenchError",
    "default_client",
    "server_path",
    "set_default_client",
]
__version__ = "0.1.0"

# what `workbench.<name>` reaches on the default client: every resource, and a few calls
DEFAULT_CLIENT_ATTRIBUTES = frozenset(
    {*NAMESPACES, "whoami", "api", "hub", "search", "compare", "tensorboard"}
)

_default: WorkbenchClient | None = None
_default_lock = threading.Lock()


def default_client() -> WorkbenchClient:
    """The module's sync client, configured from the environment on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = WorkbenchClient()
        return _default


def set_default_client(client: WorkbenchClient | None):
    """Use this client for `workbench.<name>` calls (None: make one from the environment)."""
    global _default
    with _default_lock:
        _default = client


def __getattr__(name: str):
    if name in DEFAULT_CLIENT_ATTRIBUTES:
        return getattr(default_client(), name)
    raise AttributeError(f"module 'workbench' has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *DEFAULT_CLIENT_ATTRIBUTES})
