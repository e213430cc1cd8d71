"""The SSH gateway's process: `python -m ssh_gateway`, started by JupyterHub as a service."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from datetime import UTC, datetime
from urllib.parse import quote

from hub.audit import AuditLog
from hub.db import Database, database_url, upgrade_when_ready
from hub.live_options import LiveOptionsStore
from hub.service import lifeline
from hub.service.hubapi import HubAPI, HubAPIError
from hub.settings import load_settings

from .directory import Directory
from .instance_keys import HOST_KEY_FILE, SECRET_FILE, ensure_host_key, ensure_secret
from .server import Gateway, start_server

log = logging.getLogger("workbench.ssh")


async def report(hub: HubAPI, user: str, instance: str):
    """Tell the hub an instance is in use now (its last_activity moves)."""
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    try:
        await hub.request(
            "POST",
            f"/users/{quote(user, safe='')}/activity",
            {"last_activity": now, "servers": {instance: {"last_activity": now}}},
        )
    except HubAPIError as e:
        log.warning("ssh: activity report for %s/%s failed: %s", user, instance, e)


async def report_loop(gateway: Gateway, hub: HubAPI, interval: float):
    while True:
        await asyncio.sleep(interval)
        for user, instance in gateway.activity.active():
            await report(hub, user, instance)


async def main():
    logging.basicConfig(
        level=logging.INFO, format="[%(levelname)1.1s %(asctime)s workbench-ssh] %(message)s"
    )
    for name in ("asyncssh", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    settings, _ = load_settings()
    data = settings.data_path
    data.mkdir(parents=True, exist_ok=True)
    # ends with the hub that started it; ends a predecessor a hard-killed hub left behind
    stop = asyncio.Event()
    pid_file = data / "ssh-gateway.pid"
    hub_watch = await lifeline.hold(pid_file, "ssh_gateway", stop.set)
    db_url = database_url(settings)
    await asyncio.to_thread(upgrade_when_ready, db_url)
    db = Database(db_url)
    hub = HubAPI(os.environ["JUPYTERHUB_API_URL"], os.environ["JUPYTERHUB_API_TOKEN"])
    hub.live = LiveOptionsStore(db)  # SSH settings changed while the instance runs
    directory = Directory(
        hub,
        db,
        backend=settings.backend,
        engine_url=os.environ.get("WORKBENCH_ENGINE_URL", ""),
        prefix=settings.container_prefix,
        namespace=settings.kubernetes_namespace,
    )
    secret = await asyncio.to_thread(ensure_secret, data / SECRET_FILE)
    host_key = await asyncio.to_thread(ensure_host_key, data / HOST_KEY_FILE)
    gateway = Gateway(directory, secret, max_auth_attempts=settings.ssh_max_auth_attempts)
    gateway.report_activity = lambda user, instance: report(hub, user, instance)
    gateway.audit = AuditLog(db, settings.audit_retention_days)
    server = await start_server(gateway, settings.ssh_host, settings.ssh_port, host_key)
    log.info("SSH gateway listening on %s:%s", settings.ssh_host, settings.ssh_port)
    reporter = asyncio.ensure_future(report_loop(gateway, hub, settings.ssh_activity_seconds))
    # access withdrawn while connections are open (key deleted, SSH off, allowlist
    # narrowed, user deleted) closes them within ssh_recheck_seconds
    rechecker = asyncio.ensure_future(gateway.recheck_loop(settings.ssh_recheck_seconds))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("SSH gateway stopping")
    hub_watch.cancel()
    reporter.cancel()
    rechecker.cancel()
    server.close()
    lifeline.release(pid_file)


if __name__ == "__main__":
    asyncio.run(main())
