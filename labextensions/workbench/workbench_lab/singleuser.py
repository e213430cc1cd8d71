"""The instance's server command: JupyterHub's single-user server without the hub's database layer.

`jupyterhub.singleuser` imports modules that only the hub uses: its ORM and roles (and so
SQLAlchemy) and its page handlers, through `jupyterhub.log`, `jupyterhub.utils` and
`jupyterhub.scopes`. Loading them is about half a second of CPU at every instance start
(`python -X importtime`), in a process that never opens a database. This command defers
them: each named module is registered as a deferred module that runs its real code the first
time anything reads a name from it, so nothing is faked and anything that does use them
(a server extension using SQLAlchemy, say) gets the real modules, only later.

One name is given before its module loads: `jupyterhub.log` imports `HealthCheckHandler`
from the hub's page handlers only to log the hub's health checks quietly. The instance's
server has no such handler, so a class that no handler is an instance of stands in for it.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
import types

# hub-only modules that jupyterhub.singleuser imports without using them to serve
DEFERRED = (
    "sqlalchemy",
    "jupyterhub.orm",
    "jupyterhub.roles",
    "jupyterhub.handlers",
    "jupyterhub.handlers.pages",
)
_load_lock = threading.RLock()
# names the import system looks up on a module it imports from; a module lacking them
# answers as a loaded one would (a module that is no package has no __path__)
IMPORT_PROBES = frozenset({"__path__", "__cached__"})


class HubHealthCheckHandler:
    """What `jupyterhub.log` compares handlers with: no handler of the instance's server is one."""


# names a deferred module offers before it loads: reading them does not load it
PRESET = {"jupyterhub.handlers.pages": {"HealthCheckHandler": HubHealthCheckHandler}}


class DeferredModule(types.ModuleType):
    """A module whose code runs when a name it does not hold yet is first read from it."""

    def __getattr__(self, name: str):
        # while its code runs, a name it does not hold yet is missing, as in any import;
        # another thread waits for the code to have run
        if name in IMPORT_PROBES or self.__dict__.get("_loading_in") == threading.get_ident():
            raise AttributeError(name)
        submodule = sys.modules.get(f"{self.__name__}.{name}")
        if submodule is not None:  # one of its submodules, imported (or importing) on its own
            return submodule
        load(self)
        return getattr(self, name)


def load(module: DeferredModule) -> None:
    """Run a deferred module's own code in it, once; it is then a plain module."""
    with _load_lock:
        if type(module) is not DeferredModule:
            return
        module._loading_in = threading.get_ident()
        try:
            module.__spec__.loader.exec_module(module)
        finally:
            del module._loading_in
        module.__class__ = types.ModuleType


def defer(name: str) -> DeferredModule | None:
    """Register name as a deferred module; None if it is loaded already or not installed."""
    if name in sys.modules:
        return None
    parent, _, child = name.rpartition(".")
    if parent and parent not in sys.modules:
        __import__(parent)
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        return None
    module = DeferredModule(name)
    # what the import system reads from a module: none of it loads the module
    module.__spec__ = spec
    module.__loader__ = spec.loader
    module.__file__ = spec.origin
    module.__package__ = name if spec.submodule_search_locations is not None else parent
    if spec.submodule_search_locations is not None:
        module.__path__ = list(spec.submodule_search_locations)
    module.__dict__.update(PRESET.get(name, {}))
    sys.modules[name] = module
    if parent:
        setattr(sys.modules[parent], child, module)
    return module


def defer_hub_modules() -> list[str]:
    """Defer the hub-only modules; the names deferred."""
    return [name for name in DEFERRED if defer(name) is not None]


def main(argv=None):
    """Start JupyterHub's single-user server (the arguments are jupyterhub-singleuser's)."""
    defer_hub_modules()
    from jupyterhub.singleuser import main as singleuser_main

    return singleuser_main(argv)


if __name__ == "__main__":
    sys.exit(main())
