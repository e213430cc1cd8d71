"""Workspace API: list, create, members, delete; a workspace's instances; its quota."""

from __future__ import annotations

from tornado import web

from features.quotas.store import QuotaError
from hub.rbac import has_scope
from hub.service.api import APIHandler, needs_scope

from . import store as workspaces


class WorkspaceService:
    """Membership and contents of workspaces, for the API and the instance manager."""

    def __init__(self, db, manager, hub):
        self.db = db
        self.manager = manager
        self.hub = hub

    async def is_member(self, user: str, name: str) -> bool:
        return await self.db.run(lambda s: workspaces.is_member(s, user, name))

    async def members(self, name: str) -> list[str] | None:
        """Members of a workspace; None for "default" (everyone)."""
        model = await self.db.run(lambda s: workspaces.get(s, name))
        if model is None:
            raise LookupError(name)
        return None if model["members"] == "*" else model["members"]

    async def servers(self, name: str) -> dict:
        """{(user, instance): hub server model} of every instance in the workspace."""
        members = await self.members(name)
        if members is None:
            # everyone's instances: the hub's user list holds them, 200 users a request
            held = [item async for item in self.manager.all_servers()]
        else:
            held = []
            for user in members:
                for instance, server in ((await self.hub.servers(user)) or {}).items():
                    held.append((user, instance, server))
        found = {}
        for user, instance, server in held:
            options = server.get("user_options") or {}
            if (options.get("workspace") or workspaces.DEFAULT) == name:
                found[(user, instance)] = server
        return found


class WorkspaceAPIHandler(APIHandler):
    @property
    def workspaces(self) -> WorkspaceService:
        return self.settings["workspaces"]

    async def visible(self, name: str) -> dict:
        """The workspace if the caller belongs to it (or manages workspaces), else 404."""
        model = await self.db.run(lambda s: workspaces.get(s, name))
        user = self.current_user
        if model is not None and (
            has_scope(user, "workspaces:manage")
            or await self.workspaces.is_member(user["name"], name)
        ):
            return model
        self.denied = model is not None
        raise web.HTTPError(404, f"No workspace {name!r} of yours.")

    def manage(self):
        self.require_scope("workspaces:manage")


class WorkspacesHandler(WorkspaceAPIHandler):
    """GET: the caller's workspaces (?all=1: every one, for administrators). POST: create."""

    audit_events = {"POST": ("createWorkspace", "workspace")}

    def audit_resource_id(self):
        return str((self.audit_details or {}).get("name", ""))

    @web.authenticated
    async def get(self):
        user = self.current_user
        everyone = self.get_argument("all", "") in ("1", "true")
        if everyone:
            self.manage()
        name = None if everyone else user["name"]
        self.write_json(await self.db.run(lambda s: workspaces.workspaces_of(s, name)))

    @web.authenticated
    async def post(self):
        body = self.get_json_body()
        self.audit_details = {"name": str(body.get("name", ""))[:64]}
        self.manage()
        unknown = sorted(set(body) - {"name", "description", "members"})
        if unknown:
            raise web.HTTPError(
                400, f"Unknown field(s): {', '.join(unknown)}; send name, description, members."
            )
        by = self.current_user["name"]

        def create(session):
            return workspaces.create(
                session,
                body.get("name"),
                body.get("description", ""),
                body.get("members", []),
                by,
            )

        try:
            model = await self.db.run(create)
        except workspaces.WorkspaceError as e:
            code = 409 if "already exists" in str(e) else 400
            raise web.HTTPError(code, str(e)) from None
        self.audit_details = {"name": model["name"], "members": model["members"]}
        self.write_json(model, status=201)


class WorkspaceHandler(WorkspaceAPIHandler):
    """GET a workspace; DELETE it (refused while it holds instances)."""

    audit_events = {"DELETE": ("deleteWorkspace", "workspace")}

    @web.authenticated
    async def get(self, workspace):
        self.write_json(await self.visible(workspace))

    @web.authenticated
    async def delete(self, workspace):
        self.manage()
        await self.visible(workspace)
        if workspace == workspaces.DEFAULT:
            raise web.HTTPError(400, 'The "default" workspace always exists and cannot be deleted.')
        held = await self.workspaces.servers(workspace)
        if held:
            names = ", ".join(f"{u}/{n}" for u, n in sorted(held))
            raise web.HTTPError(
                409, f"Workspace {workspace!r} still holds instances: {names}. Delete them first."
            )
        try:
            await self.db.run(lambda s: workspaces.delete(s, workspace))
        except workspaces.WorkspaceError as e:
            raise web.HTTPError(400, str(e)) from None
        self.no_content()


class MembersHandler(WorkspaceAPIHandler):
    """PUT {"members": [...]}: set a workspace's members."""

    audit_events = {"PUT": ("updateWorkspace", "workspace")}

    @web.authenticated
    async def put(self, workspace):
        self.manage()
        body = self.get_json_body()
        self.audit_details = {"members": body.get("members")}
        await self.visible(workspace)
        try:
            model = await self.db.run(
                lambda s: workspaces.set_members(s, workspace, body.get("members"))
            )
        except workspaces.WorkspaceError as e:
            raise web.HTTPError(400, str(e)) from None
        self.write_json(model)


class WorkspaceInstancesHandler(WorkspaceAPIHandler):
    """GET: every instance in the workspace (its members see each other's)."""

    @web.authenticated
    @needs_scope("instances:read")
    async def get(self, workspace):
        await self.visible(workspace)
        held = await self.workspaces.servers(workspace)
        self.write_json(
            [self.manager.model(user, server) for (user, _), server in sorted(held.items())]
        )


class WorkspaceQuotaHandler(WorkspaceAPIHandler):
    """GET/PUT /api/quotas/workspaces/{workspace}: the workspace's limits and usage."""

    audit_events = {"PUT": ("updateQuota", "quota")}

    async def _model(self, workspace: str) -> dict:
        checker = self.manager.quotas
        return {
            "workspace": workspace,
            "limits": await checker.workspace_limits(workspace),
            "usage": checker.workspace_usage(await self.workspaces.servers(workspace)).to_dict(),
        }

    @web.authenticated
    async def get(self, workspace):
        await self.visible(workspace)
        self.write_json(await self._model(workspace))

    @web.authenticated
    @needs_scope("quotas:manage")
    async def put(self, workspace):
        await self.visible(workspace)
        body = self.get_json_body()
        self.audit_details = {"limits": body.get("limits", body)}
        try:
            await self.manager.quotas.set_limits(
                workspace, body.get("limits", body), kind="workspace"
            )
        except QuotaError as e:
            raise web.HTTPError(400, str(e)) from None
        self.write_json(await self._model(workspace))


_workspace = r"/workspaces/(?P<workspace>[^/]+)"
default_handlers = [
    (r"/workspaces", WorkspacesHandler),
    (_workspace, WorkspaceHandler),
    (_workspace + "/members", MembersHandler),
    (_workspace + "/instances", WorkspaceInstancesHandler),
    (r"/quotas/workspaces/(?P<workspace>[^/]+)", WorkspaceQuotaHandler),
]


def setup(platform) -> None:
    """Workspaces: membership for the instance manager, contents for the quota checker."""
    manager = platform["instance_manager"]
    spaces = WorkspaceService(platform.db, manager, platform.hub)
    manager.workspaces = spaces.is_member
    manager.quotas.workspace_servers = spaces.servers
    platform["workspaces"] = spaces
