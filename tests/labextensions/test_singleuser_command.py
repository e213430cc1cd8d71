"""workbench-singleuser's deferred modules: what loads them and what does not.

Each check runs in a fresh interpreter of the platform's environment (which has JupyterHub
and SQLAlchemy, as the images do), with the command's module loaded from its file.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

MODULE = Path(__file__).resolve().parents[2] / "labextensions/workbench/workbench_lab/singleuser.py"

PRELUDE = f"""
import importlib.util, sys
spec = importlib.util.spec_from_file_location("wb_singleuser", {str(MODULE)!r})
su = importlib.util.module_from_spec(spec)
spec.loader.exec_module(su)
def state(name):
    module = sys.modules.get(name)
    return "absent" if module is None else type(module).__name__
"""


def load_command_module():
    spec = importlib.util.spec_from_file_location("wb_singleuser", MODULE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SU_DEFERRED = load_command_module().DEFERRED


def run(code: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.splitlines()


def test_the_single_user_server_imports_without_loading_the_hubs_database_layer():
    lines = run(
        """
        print(*su.defer_hub_modules())
        import jupyterhub.singleuser.extension
        print(state("sqlalchemy"), state("jupyterhub.orm"), state("jupyterhub.handlers.pages"))
        print(state("sqlalchemy.orm"), state("alembic"), state("jupyterhub.user"))
        """
    )
    assert lines[0].split() == list(SU_DEFERRED)
    assert lines[1] == "DeferredModule DeferredModule DeferredModule"
    assert lines[2] == "absent absent absent"


def test_reading_a_name_loads_the_real_module_once():
    lines = run(
        """
        su.defer_hub_modules()
        import sqlalchemy
        print(state("sqlalchemy"))
        from sqlalchemy import text  # a name it does not hold yet: its code runs
        print(state("sqlalchemy"), text.__module__.startswith("sqlalchemy."))
        engine = sqlalchemy.create_engine("sqlite://")
        with engine.connect() as db:
            print(db.execute(text("select 40 + 2")).scalar())
        import jupyterhub.orm
        print(jupyterhub.orm.User.__tablename__, state("jupyterhub.orm"))
        print(sys.modules["jupyterhub"].orm is sys.modules["jupyterhub.orm"])
        """
    )
    assert lines == [
        "DeferredModule",
        "module True",
        "42",
        "users module",
        "True",
    ]


def test_importing_a_submodule_leaves_its_package_deferred():
    lines = run(
        """
        su.defer_hub_modules()
        from sqlalchemy.exc import SQLAlchemyError  # what jupyterhub.utils imports
        print(state("sqlalchemy"), state("sqlalchemy.exc"), SQLAlchemyError.__module__)
        import sqlalchemy
        print(sqlalchemy.exc is sys.modules["sqlalchemy.exc"], state("sqlalchemy"))
        print(sqlalchemy.__version__ == __import__("importlib.metadata").metadata.version(
            "sqlalchemy"), state("sqlalchemy"))
        """
    )
    assert lines == [
        "DeferredModule module sqlalchemy.exc",
        "True DeferredModule",
        "True module",
    ]


def test_the_hubs_health_check_handler_is_the_only_name_given_before_loading():
    lines = run(
        """
        su.defer_hub_modules()
        import jupyterhub.log
        from jupyterhub.handlers.pages import HealthCheckHandler
        print(HealthCheckHandler.__name__, state("jupyterhub.handlers.pages"))
        from jupyterhub.handlers.pages import SpawnHandler  # any other name loads the pages
        print(state("jupyterhub.handlers.pages"), SpawnHandler.__module__)
        pages = sys.modules["jupyterhub.handlers.pages"]
        print(pages.HealthCheckHandler.__module__)
        """
    )
    assert lines == [
        "HubHealthCheckHandler DeferredModule",
        "module jupyterhub.handlers.pages",
        "jupyterhub.handlers.pages",
    ]


def test_modules_loaded_before_are_left_as_they_are():
    lines = run(
        """
        import sqlalchemy
        print(*su.defer_hub_modules())
        print(state("sqlalchemy"), state("jupyterhub.orm"))
        """
    )
    assert lines == [" ".join(m for m in SU_DEFERRED if m != "sqlalchemy"), "module DeferredModule"]


def test_a_module_that_is_not_installed_is_not_deferred():
    lines = run(
        """
        print(su.defer("no_such_module_here"), state("no_such_module_here"))
        try:
            import no_such_module_here
        except ModuleNotFoundError as e:
            print("ModuleNotFoundError", e.name)
        """
    )
    assert lines == ["None absent", "ModuleNotFoundError no_such_module_here"]


def test_threads_reading_a_deferred_module_at_once_all_get_its_names():
    lines = run(
        """
        from concurrent.futures import ThreadPoolExecutor
        su.defer_hub_modules()
        import sqlalchemy
        with ThreadPoolExecutor(8) as pool:
            found = list(pool.map(lambda _: sqlalchemy.create_engine.__name__, range(8)))
        print(*sorted(set(found)), state("sqlalchemy"))
        """
    )
    assert lines == ["create_engine module"]
