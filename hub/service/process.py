"""The main of every hub-managed service process: the API service, the SSH gateway, runners."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable

from workbench import AsyncWorkbenchClient, HubAPI

from ..db import database_url, upgrade_when_ready
from ..settings import WorkbenchSettings, load_settings
from . import lifeline

log = logging.getLogger("workbench.service")

QUIET_LOGGERS = ("asyncssh", "alembic", "httpx")


def hub_api(timeout: float = 30) -> HubAPI:
    """JupyterHub's API, called with this service's own token (JupyterHub puts both in a
    service's environment), through the platform's one client."""
    client = AsyncWorkbenchClient(
        "",
        os.environ["JUPYTERHUB_API_TOKEN"],
        api_url="",
        hub_api_url=os.environ["JUPYTERHUB_API_URL"],
        timeout=timeout,
    )
    return client.hub_api


def service_main(
    name: str, module: str, run: Callable[[WorkbenchSettings, asyncio.Event], Awaitable[None]]
) -> None:
    """Run a hub-managed service: `python -m <module>`, started by JupyterHub.

    Sets up logging as "[I time <name>] ...", reads the platform's settings, ties the process
    to the hub that started it (and ends a predecessor a hard-killed hub left behind, through
    `<data>/<name>.pid`), brings the platform database to the newest migration of every
    feature, and stops on SIGTERM or SIGINT. `run(settings, stop)` does the service's work
    and returns once `stop` is set and it has cleaned up.
    """
    logging.basicConfig(
        level=logging.INFO, format=f"[%(levelname)1.1s %(asctime)s {name}] %(message)s"
    )
    for quiet in QUIET_LOGGERS:
        logging.getLogger(quiet).setLevel(logging.WARNING)
    asyncio.run(_serve(name, module, run))


async def _serve(name: str, module: str, run) -> None:
    settings, _ = load_settings()
    settings.data_path.mkdir(parents=True, exist_ok=True)
    stop = asyncio.Event()
    pid_file = settings.data_path / f"{name}.pid"
    hub_watch = await lifeline.hold(pid_file, module, stop.set)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await asyncio.to_thread(upgrade_when_ready, database_url(settings))
        await run(settings, stop)
    finally:
        log.info("%s stopped", name)
        hub_watch.cancel()
        lifeline.release(pid_file)
