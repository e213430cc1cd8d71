"""Sign-in: local accounts with hashed passwords, and the first admin account."""

from __future__ import annotations

import asyncio
import inspect
import secrets
import sys

import bcrypt
from nativeauthenticator import NativeAuthenticator
from nativeauthenticator import handlers as native_handlers
from nativeauthenticator.orm import UserInfo
from tornado import web
from traitlets import HasTraits, Integer, Unicode

from .rbac import add_to_default_group


def hash_password(password: str, rounds: int = 12) -> bytes:
    """The bcrypt hash of password at cost `rounds` (2**rounds iterations)."""
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds))


def password_matches(password: str, hashed: bytes | memoryview) -> bool:
    """Whether password hashes to the stored bcrypt hash (False for a malformed hash)."""
    try:
        return bcrypt.checkpw(password.encode(), bytes(hashed))
    except ValueError:
        return False


def hash_cost(hashed: bytes | memoryview) -> int | None:
    """The cost factor a bcrypt hash ($2b$12$...) was made with; None if unreadable."""
    try:
        return int(bytes(hashed).split(b"$")[2])
    except (IndexError, ValueError):
        return None


def set_password(db, username: str, password: str, rounds: int = 12) -> None:
    """Create or reset the local account `username` with `password` (bcrypt), approved."""
    hashed = hash_password(password, rounds)
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
            password = data.get("password", "")
            if await asyncio.to_thread(password_matches, password, info.password):
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


class DeletedUserMixin(HasTraits):
    """Authenticator mixin: a deleted user's instances stop first, and nothing of theirs stays
    in the platform database (hub.deleted_users), so a new account that takes the name later
    inherits nothing."""

    platform_db_url = Unicode(
        "",
        config=True,
        help="""URL of the platform database, whose rows of a deleted user (keys, saved images
        and shares, workspace memberships, live options, quota) go with the user. Set from
        the workbench settings; empty: nothing is removed there.""",
    )

    _platform_db = None

    async def delete_user(self, user):
        """JupyterHub's hook, awaited before it deletes the user's servers and the user."""
        await self._stop_instances(user)
        if self.platform_db_url:
            from .db import Database
            from .deleted_users import forget_deleted_user

            if self._platform_db is None:
                self._platform_db = Database(self.platform_db_url)
            counts = await forget_deleted_user(self._platform_db, user.name)
            gone = ", ".join(f"{n} {kind}" for kind, n in counts.items() if n) or "nothing"
            self.log.info("Deleting user %s: removed %s of theirs", user.name, gone)
        result = super().delete_user(user)
        if inspect.isawaitable(result):
            await result

    async def _stop_instances(self, user):
        """Stop the user's running instances as the hub's own stop does (the proxy's route
        first): JupyterHub stops only the default server before deleting a user, and cannot
        delete one whose named servers run."""
        active = [s for name, s in list(user.spawners.items()) if name and s.active]
        busy = sorted(s.name for s in active if s.pending)
        if busy:
            message = (
                f"Instance(s) {', '.join(busy)} of {user.name} are starting or stopping; wait "
                "until they are done, then delete the user again."
            )
            raise web.HTTPError(400, message, reason=message)
        proxy = getattr(self.parent, "proxy", None)
        for spawner in active:
            self.log.info("Stopping %s before deleting user %s", spawner._log_name, user.name)
            if proxy is not None:
                await proxy.delete_user(user, spawner.name)
            await user.stop(spawner.name)


def with_default_group(authenticator_class: type) -> type:
    """A subclass of authenticator_class whose new users get the default platform role, and
    whose deleted users leave nothing behind.

    Its configuration table keeps working: traitlets applies a parent class's section
    ([GenericOAuthenticator], [LDAPAuthenticator]) to subclasses.
    """
    if issubclass(authenticator_class, DefaultGroupMixin):
        return authenticator_class
    return type(
        "Workbench" + authenticator_class.__name__,
        (DefaultGroupMixin, DeletedUserMixin, authenticator_class),
        {"__module__": __name__},
    )


class WorkbenchAuthenticator(DefaultGroupMixin, DeletedUserMixin, NativeAuthenticator):
    """NativeAuthenticator that creates the first admin's account at first start."""

    initial_admin_password = Unicode(
        "",
        config=True,
        help="""Password for the first admin account if it does not exist yet; empty makes
        a random one, printed once. Set from the workbench settings.""",
    )

    password_hash_rounds = Integer(
        12,
        min=4,
        max=31,
        config=True,
        help="""bcrypt's cost factor for new password hashes; a stored hash of another cost
        is made again at its owner's next sign-in. Set from the workbench settings.""",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._create_first_admin()

    async def authenticate(self, handler, data):
        """NativeAuthenticator's check, with bcrypt in a thread: a hash takes a quarter
        second of CPU at cost 12, which would stall every request of the hub meanwhile."""
        username = self.normalize_username(data["username"])
        password = data["password"]
        user = self.get_user(username)
        if not user:
            return None
        if self.allowed_failed_logins and self.is_blocked(username):
            return None
        stored = user.password
        validations = [
            user.is_authorized,
            await asyncio.to_thread(password_matches, password, stored),
        ]
        if user.has_2fa:
            validations.append(user.is_valid_token(data.get("2fa")))
        if not all(validations):
            self.add_login_attempt(username)
            return None
        self.successful_login(username)
        if hash_cost(stored) != self.password_hash_rounds:
            user.password = await asyncio.to_thread(
                hash_password, password, self.password_hash_rounds
            )
            self.db.commit()
            self.log.info(
                "Password of %s hashed again at cost %s", username, self.password_hash_rounds
            )
        return username

    def get_handlers(self, app):
        return [
            (route, LoginHandler if route == r"/login" else handler)
            for route, handler in super().get_handlers(app)
        ]

    def _create_first_admin(self):
        """Create the account of every configured admin that has none yet.

        Every name in admin_users is created, not only the first: NativeAuthenticator
        approves any admin name at sign-up, so an admin name left without an account would
        make whoever signs up with it first an administrator. The first admin gets
        initial_admin_password if set; the others (and the first, without it) a random
        password, printed once.
        """
        created = []
        for i, admin in enumerate(sorted(self.admin_users)):
            if UserInfo.find(self.db, admin) is not None:
                continue
            given = self.initial_admin_password if i == 0 else ""
            password = given or secrets.token_urlsafe(12)
            set_password(self.db, admin, password, self.password_hash_rounds)
            self.log.info("Created the admin account %r", admin)
            if not given:
                created.append((admin, password))
        if created:
            accounts = "".join(
                f"    user:     {admin}\n    password: {password}\n" for admin, password in created
            )
            banner = (
                "\n" + "=" * 72 + "\n"
                f"  First start: created the admin account{'s' if len(created) > 1 else ''}.\n"
                f"{accounts}"
                "  Each password is shown once. Change it after signing in\n"
                "  (/hub/change-password) or reset it with `workbench admin-password`.\n"
                + "=" * 72
                + "\n"
            )
            print(banner, file=sys.stderr, flush=True)
