"""The instance's server command: JupyterHub's single-user server without database migrations.

`jupyterhub.singleuser` imports JupyterHub's ORM (for its scope checks and log filters), and
the ORM imports alembic at module level for the hub's own database upgrades: about 0.3 s of
every instance start (`python -X importtime`), in a process that has no database. This
command puts small stand-ins for the alembic modules the ORM names in place before starting
the server; calling anything in them raises, naming this command. Everything else is
`jupyterhub-singleuser` as it is.
"""

from __future__ import annotations

import sys
import types

# the modules jupyterhub.orm imports at its top; the hub process never runs this command
ALEMBIC_MODULES = ("alembic", "alembic.command", "alembic.config", "alembic.script")


class MigrationsUnavailable(types.ModuleType):
    """A stand-in for an alembic module: any name in it is a callable that raises."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return _unavailable(f"{self.__name__}.{name}")


def _unavailable(what: str):
    def unavailable(*args, **kwargs):
        raise RuntimeError(
            f"{what} is not available in an instance's server: workbench-singleuser starts "
            "JupyterHub's single-user server without database migrations. Run "
            "jupyterhub-singleuser where they are needed."
        )

    unavailable.__qualname__ = unavailable.__name__ = what.rpartition(".")[2]
    return unavailable


def without_migrations() -> None:
    """Stand in for the alembic modules, unless something imported alembic already."""
    if "alembic" in sys.modules:
        return
    for name in ALEMBIC_MODULES:
        module = MigrationsUnavailable(name)
        module.__path__ = []  # a package, so `import alembic.command` finds its submodules
        sys.modules[name] = module
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(sys.modules[parent], child, module)


def main(argv=None):
    """Start JupyterHub's single-user server (the arguments are jupyterhub-singleuser's)."""
    without_migrations()
    from jupyterhub.singleuser import main as singleuser_main

    return singleuser_main(argv)


if __name__ == "__main__":
    sys.exit(main())
