"""The SSH gateway's process: `python -m ssh_gateway`, started by JupyterHub as a service."""

from __future__ import annotations

import asyncio
import logging
import os
from urllib.parse import quote

from workbench import HubAPI, WorkbenchError
from workbench.times import aware_utcnow, isoformat

from hub.audit import AuditLog
from hub.db import Database, database_url
from hub.features import load_features
from hub.service.process import hub_api, service_main
from spawner.instance_keys import HOST_KEY_FILE, SECRET_FILE, ensure_host_key, ensure_secret

from .directory import Directory
from .server import Gateway, start_server

log = logging.getLogger("workbench.ssh")


async def report(hub: HubAPI, user: str, instance: str):
    """Tell the hub an instance is in use now (its last_activity moves)."""
    now = isoformat(aware_utcnow())
    try:
        await hub.request(
            "POST",
            f"/users/{quote(user, safe='')}/activity",
            {"last_activity": now, "servers": {instance: {"last_activity": now}}},
        )
    except WorkbenchError as e:
        log.warning("ssh: activity report for %s/%s failed: %s", user, instance, e)


async def report_loop(gateway: Gateway, hub: HubAPI, interval: float):
    while True:
        await asyncio.sleep(interval)
        for user, instance in gateway.activity.active():
            await report(hub, user, instance)


async def serve(settings, stop: asyncio.Event):
    """Serve SSH until stop is set."""
    data = settings.data_path
    db = Database(database_url(settings))
    # SSH settings changed while the instance runs are read by the directory itself, with the
    # key, in one query per decision (hub.live is not set: the hub's answers are kept as is)
    hub = hub_api()
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
    events = {name for feature in load_features() for name in feature.audit_events}
    gateway.audit = AuditLog(db, settings.audit_retention_days, events=events)
    server = await start_server(gateway, settings.ssh_host, settings.ssh_port, host_key)
    log.info("SSH gateway listening on %s:%s", settings.ssh_host, settings.ssh_port)
    loop = type(asyncio.get_running_loop())
    if loop.__module__.startswith("uvloop"):
        log.info("ssh: relaying on uvloop")
    else:
        log.warning("ssh: uvloop is not installed; relaying on asyncio's event loop (slower)")
    reporter = asyncio.ensure_future(report_loop(gateway, hub, settings.ssh_activity_seconds))
    # access withdrawn while connections are open (key deleted, SSH off, allowlist
    # narrowed, user deleted) closes them within ssh_recheck_seconds
    rechecker = asyncio.ensure_future(gateway.recheck_loop(settings.ssh_recheck_seconds))
    await stop.wait()
    log.info("SSH gateway stopping")
    reporter.cancel()
    rechecker.cancel()
    server.close()
    gateway.close()
    await gateway.audit.flush()


def use_uvloop() -> bool:
    """Run the gateway on uvloop where it is installed: its transports read and write with
    less Python per packet than asyncio's, which counts when every byte is relayed."""
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def main():
    use_uvloop()
    service_main("ssh-gateway", "ssh_gateway", serve)


if __name__ == "__main__":
    main()
