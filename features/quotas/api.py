"""Quota API: a user's limits and what counts against them; administrators set limits."""

from __future__ import annotations

from tornado import web

from hub.service.api import APIHandler

from .store import QuotaError


class UserQuotaHandler(APIHandler):
    """GET/PUT /api/quotas/users/{user}: {"limits": {...}, "usage": {...}}."""

    audit_events = {"PUT": ("updateQuota", "quota")}

    async def _model(self, user: str) -> dict:
        checker = self.manager.quotas
        servers = await self.run(self.manager._servers(user))
        return {
            "user": user,
            "limits": await checker.limits(user),
            "usage": checker.usage(user, servers).to_dict(),
        }

    @web.authenticated
    async def get(self, user):
        self.check_user(user)
        self.write_json(await self._model(user))

    @web.authenticated
    async def put(self, user):
        self.require_scope("quotas:manage")
        body = self.get_json_body()
        limits = body.get("limits", body)
        self.audit_details = {"limits": limits}
        await self.run(self.manager._servers(user))  # 404 for an unknown user
        try:
            await self.manager.quotas.set_limits(user, limits)
        except QuotaError as e:
            raise web.HTTPError(400, str(e)) from None
        self.write_json(await self._model(user))


default_handlers = [(r"/quotas/users/(?P<user>[^/]+)", UserQuotaHandler)]


def setup(platform) -> None:
    """The quota checker that admits instance creates and starts."""
    from .store import QuotaChecker

    platform["quota_checker"] = QuotaChecker(
        platform.db, platform.policy, platform.settings.default_quota()
    )
