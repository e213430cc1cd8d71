"""Sign-in: local accounts with hashed passwords, and the first admin account."""

from __future__ import annotations

import inspect
import secrets
import sys

import bcrypt
from nativeauthenticator import NativeAuthenticator
from nativeauthenticator import handlers as native_handlers
from nativeauthenticator.orm import UserInfo
from traitlets import Unicode

from .rbac import add_to_default_group


def set_password(db, username: str, password: str) -> None:
    """Create or reset the local account `username` with `password` (bcrypt), approved."""
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt())
    info = UserInfo.find(db, username)
    if info is None:
        db.add(UserInfo(username=username, password=hashed, is_authorized=True))
    else:
        info.password = hashed
        info.is_authorized = True
    db.commit()


class LoginHandler(native_handlers.LoginHandler):
    """The native login page, fitted to JupyterHub 6 (no statsd, error re-rendering)."""

    def _render(self, login_error=None, username=None, **kwargs):
        return super()._render(login_error=login_error, username=username)

    async def post(self):
        data = {arg: self.get_argument(arg, strip=False) for arg in self.request.arguments}
        user = await self.login_user(data)
        if user:
            self._jupyterhub_user = user
            self.redirect(self.get_next_url(user))
            return
        error = "Invalid username or password."
        info = self.authenticator.get_user(data.get("username", ""))
        if info is not None and not info.is_authorized:
            if info.is_valid_password(data.get("password", "")):
                error = "Your account waits for an administrator's approval."
        self.set_status(403)
        self.finish(await self._render(login_error=error, username=data.get("username")))


class DefaultGroupMixin:
    """Authenticator mixin: new users join the platform's default permission group."""

    async def add_user(self, user):
        result = super().add_user(user)
        if inspect.isawaitable(result):
            await result
        add_to_default_group(user)


def with_default_group(authenticator_class: type) -> type:
    """A subclass of authenticator_class whose new users get the default platform role.

    Its configuration table keeps working: traitlets applies a parent class's section
    ([GenericOAuthenticator], [LDAPAuthenticator]) to subclasses.
    """
    if issubclass(authenticator_class, DefaultGroupMixin):
        return authenticator_class
    return type(
        "Workbench" + authenticator_class.__name__,
        (DefaultGroupMixin, authenticator_class),
        {"__module__": __name__},
    )


class WorkbenchAuthenticator(DefaultGroupMixin, NativeAuthenticator):
    """NativeAuthenticator that creates the first admin's account at first start."""

    initial_admin_password = Unicode(
        "",
        config=True,
        help="""Password for the first admin account if it does not exist yet; empty makes
        a random one, printed once. Set from the workbench settings.""",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._create_first_admin()

    def get_handlers(self, app):
        return [
            (route, LoginHandler if route == r"/login" else handler)
            for route, handler in super().get_handlers(app)
        ]

    def _create_first_admin(self):
        if not self.admin_users:
            return
        admin = sorted(self.admin_users)[0]
        if UserInfo.find(self.db, admin) is not None:
            return
        password = self.initial_admin_password or secrets.token_urlsafe(12)
        set_password(self.db, admin, password)
        self.log.info("Created the admin account %r", admin)
        if not self.initial_admin_password:
            banner = (
                "\n" + "=" * 72 + "\n"
                f"  First start: created the admin account.\n"
                f"    user:     {admin}\n"
                f"    password: {password}\n"
                "  This password is shown once. Change it after signing in\n"
                "  (/hub/change-password) or reset it with `workbench admin-password`.\n"
                + "=" * 72
                + "\n"
            )
            print(banner, file=sys.stderr, flush=True)
