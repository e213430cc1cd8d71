"""Work per instance request and per auto-stop round, counted on a real hub as users grow."""

from __future__ import annotations

import asyncio
import secrets

import pytest
from sqlalchemy import event
from workbench import AsyncWorkbenchClient

from features.instances.lifecycle import Lifecycle
from features.instances.live_options import LiveOptionsStore
from features.instances.manager import InstanceManager
from features.workspaces.api import WorkspaceService
from hub.db import Database, database_url
from hub.service.api import APIError
from hub.settings import load_settings
from spawner.options import make_policy

pytestmark = pytest.mark.integration


class Counted:
    """The instance manager and the auto-stop loop as the platform service builds them
    (features.instances.setup), run in this process against the real hub with an
    administrator's token; the hub requests and SQL statements they make are counted."""

    def __init__(self, hub, token: str):
        settings, _ = load_settings(hub.config)
        self.db = Database(database_url(settings))
        self.client = AsyncWorkbenchClient(hub.url, token, timeout=120)
        api = self.client.hub_api
        api.live = LiveOptionsStore(self.db)
        self.manager = InstanceManager(api, make_policy(**settings.spawner_config()))
        self.lifecycle = self.manager.lifecycle = Lifecycle(self.manager, settings)
        # a round here only records what it would stop or restart: the hub's own platform
        # service acts on the other tests' instances
        self.acted: list[tuple[str, str, str]] = []
        self.manager.stop = lambda user, name: self._act("stop", user, name)
        self.manager.start = lambda user, name: self._act("start", user, name)
        self.on = False
        self.hub_requests: list[str] = []
        self.sql = 0
        event.listen(self.db.engine, "before_cursor_execute", self._on_sql)
        self.client.http.event_hooks["request"].append(self._on_request)

    async def _act(self, action: str, user: str, name: str):
        self.acted.append((action, user, name))

    def _on_sql(self, *args):
        if self.on:
            self.sql += 1

    async def _on_request(self, request):
        if self.on:
            self.hub_requests.append(f"{request.method} {request.url.path}")

    async def count(self, coro):
        """(what coro returns, hub requests it made, SQL statements it ran)."""
        self.hub_requests, self.sql, self.on = [], 0, True
        try:
            result = await coro
        finally:
            self.on = False
        return result, self.hub_requests, self.sql

    async def add_users(self, names: list[str]):
        """Users added by an administrator, each with one stopped instance "nb"."""
        await self.client.hub_api.request("POST", "/users", {"usernames": names})
        for name in names:
            await self.client.instances.create("nb", user=name, start=False)

    async def close(self, names: list[str]):
        for name in names:
            await self.client.hub_api.request("DELETE", f"/users/{name}", ok_404=True)
        await self.client.http.aclose()
        self.db.dispose()


def run_counted(hub, scenario):
    """Run scenario(counted, new_names) in one event loop; the users it made are deleted."""

    async def main():
        counted = Counted(hub, hub.client().token)
        made: list[str] = []

        def new_names(n: int) -> list[str]:
            names = [f"calls-{secrets.token_hex(3)}" for _ in range(n)]
            made.extend(names)
            return names

        try:
            await scenario(counted, new_names)
        finally:
            await counted.close(made)

    asyncio.run(main())


def test_all_instances_are_read_in_one_request_and_one_query(hub):
    """The auto-stop round and the default workspace's instances (everyone's)."""

    async def scenario(counted: Counted, new_names):
        manager = counted.manager
        spaces = WorkspaceService(counted.db, manager, manager.hub)
        few = new_names(2)
        await counted.add_users(few)
        _, hub_few, sql_few = await counted.count(counted.lifecycle.check())
        _, ws_hub_few, ws_sql_few = await counted.count(spaces.servers("default"))

        more = new_names(6)
        await counted.add_users(more)
        # an option changed while running is laid over the hub's options in the same query
        await counted.manager.hub.live.set(more[-1], "nb", {"description": "changed live"})

        async def read_all():
            return [item async for item in counted.lifecycle.servers()]

        seen, hub_more, sql_more = await counted.count(read_all())
        _, hub_round, sql_round = await counted.count(counted.lifecycle.check())
        in_default, ws_hub, ws_sql = await counted.count(spaces.servers("default"))

        found = {(user, name): server for user, name, server in seen}
        assert {(u, "nb") for u in few + more} <= set(found)
        assert found[(more[-1], "nb")]["user_options"]["description"] == "changed live"
        assert found[(few[0], "nb")]["user_options"]["description"] == ""
        # the same work with 8 users as with 2: one page of the hub's user list and one
        # query of the options changed while running, whatever the number of instances
        assert hub_few == hub_more == hub_round
        assert len(hub_round) == 1 and hub_round[0].endswith("/hub/api/users")
        assert sql_few == sql_more == sql_round == 1
        assert not [a for a in counted.acted if a[1] in few + more]

        assert {(u, "nb") for u in few + more} <= set(in_default)
        assert in_default[(more[-1], "nb")]["user_options"]["description"] == "changed live"
        # the workspace's own row, then the same page and query as the round, for any N
        assert ws_hub_few == ws_hub == hub_round and ws_sql_few == ws_sql
        await counted.manager.hub.live.clear(more[-1], "nb")

    run_counted(hub, scenario)


def test_an_instance_status_is_one_hub_request(hub):
    async def scenario(counted: Counted, new_names):
        (user,) = new_names(1)
        await counted.add_users([user])
        model, requests, sql = await counted.count(counted.manager.get(user, "nb"))
        # a panel polls this for every open instance: one request to the hub, one query
        assert requests == [f"GET /hub/api/users/{user}"] and sql == 1
        listed = await counted.manager.list(user)
        assert model == listed[0] and model["state"] == "stopped" and model["owner"] == user

        with pytest.raises(APIError) as missing:
            await counted.manager.get(user, "no-such")
        assert missing.value.code == 404 and "No instance 'no-such'" in missing.value.message
        with pytest.raises(APIError) as nobody:
            await counted.manager.get(user + "-gone", "nb")
        assert nobody.value.code == 404 and "No user" in nobody.value.message

    run_counted(hub, scenario)


def test_a_failed_start_always_says_why_and_what_to_do():
    """JupyterHub's start timeout fails a spawn with no text: the API still says why."""
    timed_out = InstanceManager._failed("scale", "Spawn failed: ")
    assert timed_out.startswith("Instance 'scale' failed to start: it was not running within")
    assert timed_out.endswith("start it again")
    said = InstanceManager._failed("nb", "Spawn failed: The container stopped (exit code 3).")
    assert said == "Instance 'nb' failed to start: The container stopped (exit code 3)."
