"""pytest-jupyter's server fixtures (jp_fetch, jp_serverapp, ...) for the modules that ask.

Loaded as a plugin (pytest_plugins), its autouse event-loop fixtures and its test-call hook
would act on every test collected after that module, the browser tests' among them: a module
that needs them calls use_jupyter_fixtures(globals()) instead.
"""

from __future__ import annotations

import asyncio

from pytest_jupyter import jupyter_server as jupyter_server_fixtures

JUPYTER_FIXTURES = (
    "jp_asyncio_loop",
    "jp_server_cleanup",
    "jp_environ",
    "jp_home_dir",
    "jp_data_dir",
    "jp_config_dir",
    "jp_runtime_dir",
    "jp_system_jupyter_path",
    "jp_env_jupyter_path",
    "jp_system_config_path",
    "jp_env_config_path",
    "jp_kernel_dir",
    "echo_kernel_spec",
    "jp_argv",
    "jp_http_port",
    "jp_base_url",
    "jp_root_dir",
    "jp_nbconvert_templates",
    "jp_logging_stream",
    "jp_configurable_serverapp",
    "jp_serverapp",
    "jp_web_app",
    "jp_auth_header",
    "jp_fetch",
    "http_server",
    "http_server_port",
    "http_server_client",
)


def use_jupyter_fixtures(namespace: dict) -> None:
    """Make pytest-jupyter's server fixtures fixtures of the module whose globals these are."""
    namespace.update({name: getattr(jupyter_server_fixtures, name) for name in JUPYTER_FIXTURES})


def fetch_on_loop(jp_fetch, loop, *parts: str, **kwargs):
    """jp_fetch(*parts, **kwargs) run to its end on pytest-jupyter's loop, where the server
    under test runs. The loop is made current first: tornado's client makes its future on the
    current loop, and an earlier module's loop handling (pytest-asyncio's, in the same test
    process) can leave none."""
    asyncio.set_event_loop(loop)
    return loop.run_until_complete(jp_fetch(*parts, **kwargs))
