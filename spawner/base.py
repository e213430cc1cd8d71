"""What both spawners share: instance options, the spawn form and spawn progress."""

from __future__ import annotations

import asyncio
import inspect
import time
from urllib.parse import quote

from tornado import web
from traitlets import Any, Dict, default

from .lifecycle import auto_stop_form_fields
from .options import (
    DEFAULT_WORKSPACE,
    MAX_DESCRIPTION,
    InstancePolicy,
    InvalidOptions,
    ResolvedOptions,
    make_policy,
    options_from_form,
    resolve_options,
    validate_instance_name,
)
from .policy_settings import InstancePolicySettings
from .quotas import ADMITTED, QuotaExceeded, check_limits, start_usage
from .ssh import InstanceSSHMixin, ssh_form_fields
from .templating import render_template

# the platform's permission to start instances (a custom JupyterHub scope)
START_SCOPE = "custom:workbench:instances:start"

# what a user typed into a spawn form that was refused, shown again once, by user name
_rejected_forms: dict[str, dict] = {}
# seconds a spawn form's resolved options stay good for the start it submits (the start's
# own check follows at once; saved-image lookups are cached as long: features.images.store)
FORM_RESOLUTION_SECONDS = 5


def oauth_client_id(user: str, name: str) -> str:
    """The OAuth client name of a user's named server, one per (user, server).

    JupyterHub's own, "jupyterhub-user-<user>-<server>", reads two ways when names hold "-":
    user a's server b-c-d and user a-b's server c-d would share one client, and starting one
    would take over the other's sign-in. Here the user's part holds no "-" (it is escaped),
    so the first "-" after it ends it. Quoted, as JupyterHub's: it names the server's cookie.
    """
    escaped = quote(user, safe="").replace("-", "%2D")
    return f"jupyterhub-user-{escaped}-{quote(name, safe='')}"


class InstanceSpawnerMixin(InstancePolicySettings, InstanceSSHMixin):
    """Spawner traits and behaviour that make a JupyterHub named server an instance.

    The instance policy's traits (catalog, flavors, storage and auto-stop bounds) come from
    spawner.policy_settings, shared with the settings file.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.name and self.oauth_client_id.startswith("jupyterhub-user-"):
            self.oauth_client_id = oauth_client_id(self.user.name, self.name)

    instance_environment = Dict(
        help="""Environment variables every instance gets at each start, for the network it
        lives in (CA bundle, pip index, proxies: hub.settings' instance_* settings, set by
        jupyterhub_config.py). Never baked into a saved image.""",
    ).tag(config=True)
    instance_files = Dict(
        help="""Read-only files every instance gets at each start: {host path: path in the
        instance} (the CA bundle over the image's system store, an apt sources list). Docker
        and Podman mount them; on Kubernetes mount them from a ConfigMap yourself.""",
    ).tag(config=True)

    user_folders = Dict(
        help="""Host folders of the instance's owner mounted read-only into each of their
        instances at each start: {path below the work folder: host folder template}, where
        "{user}" in the template is the owner's folder name (their jobs' code, outputs and
        logs: the jobs feature sets {"jobs": "<data>/jobs/{user}"}). Docker and Podman mount
        them; on Kubernetes they need a shared volume (not mounted).""",
    ).tag(config=True)

    saved_images = Any(
        None,
        help="""Where saved images are looked up: an object with lookup(user, name) and
        available(user) (features.images.store.SavedImageStore, set by jupyterhub_config.py from
        the platform database). None: instances use catalog images only.""",
    ).tag(config=True)

    workspace_members = Any(
        None,
        help="""A callable returning an object whose is_member(user, workspace) says whether
        a user belongs to a workspace (blocking; features.workspaces.store.WorkspaceStore, set by
        jupyterhub_config.py). None: every instance is in the "default" workspace's rules.""",
    ).tag(config=True)

    live_options = Any(
        None,
        help="""A callable returning where options changed on a running instance are kept
        (SSH, auto-stop, description; features.instances.live_options.LiveOptionsStore, set by
        jupyterhub_config.py). At every stop, whichever path stopped it, they become the
        instance's own options; they go when it is deleted. None: nothing is kept aside.""",
    ).tag(config=True)

    quota_limits = Any(
        None,
        help="""A callable returning the quota store: an object whose limits(user) and
        workspace_limits(workspace) return {quota: limit} (blocking, called in a worker
        thread; features.quotas.store.QuotaStore, set by the quotas feature). Every start is
        admitted against them (spawner.quotas). None: no quotas.""",
    ).tag(config=True)

    _policy = None
    _workspace_store = None
    _quota_store = None
    # the last start was refused before anything ran (options, permission, quota)
    _start_refused = False

    def _workspaces(self):
        if self._workspace_store is None and self.workspace_members is not None:
            self._workspace_store = self.workspace_members()
        return self._workspace_store

    async def workspace_names(self) -> list[str]:
        """The owner's workspaces, for the form ("default" alone without workspaces)."""
        store = self._workspaces()
        if store is None:
            return [DEFAULT_WORKSPACE]
        try:
            return await asyncio.to_thread(store.names_of, self.user.name)
        except Exception:  # noqa: BLE001 - the table may not exist yet at first start
            return [DEFAULT_WORKSPACE]

    async def check_workspace(self, workspace: str):
        """HTTP 404 unless the owner belongs to the instance's workspace."""
        if workspace == DEFAULT_WORKSPACE or self._workspaces() is None:
            return
        if not await asyncio.to_thread(self._workspace_store.is_member, self.user.name, workspace):
            message = (
                f"No workspace {workspace!r} of yours: pick one of your workspaces, or ask an "
                "administrator to add you to it."
            )
            raise web.HTTPError(404, message, reason=message)

    # JupyterHub's PATCH of a stopped server writes user_options to the database
    # but not to the in-memory Spawner, so the hub's API and pages would show the
    # old image and flavor until the next start. The database row is always
    # current (spawn() writes it too), so read it from there.
    @property
    def user_options(self):
        orm_spawner = getattr(self, "orm_spawner", None)
        if orm_spawner is not None and orm_spawner.user_options is not None:
            return orm_spawner.user_options
        return self.__dict__.get("_user_options", {})

    @user_options.setter
    def user_options(self, value):
        self.__dict__["_user_options"] = value

    @property
    def policy(self) -> InstancePolicy:
        """The catalog, flavors and bounds instances are checked against."""
        if self._policy is None:
            self._policy = make_policy(**self.policy_settings(), saved_images=self.saved_images)
        return self._policy

    async def load_policy(self, image=None) -> InstancePolicy:
        """The policy, its catalog and flavors files read off the event loop on first use,
        and the saved image `image` (default: the instance's) looked up in a worker thread."""
        if self._policy is None:
            await asyncio.to_thread(lambda: self.policy)
        if image is None:
            image = (self.user_options or {}).get("image")
        await self._policy.prefetch(self.user.name, image)
        return self.policy

    # this start's options, resolved once (spawn form, apply_user_options, start, metering):
    # (the options asked for, their resolution, when); dropped when the start ends
    _resolution: tuple[dict, ResolvedOptions, float] | None = None

    def _resolved_earlier(self, options, max_age: float | None = None) -> ResolvedOptions | None:
        """This start's resolution of `options` (as asked for, or as resolved), if any and
        at most max_age seconds old."""
        if self._resolution is None:
            return None
        asked, resolved, when = self._resolution
        if max_age is not None and time.monotonic() - when > max_age:
            return None
        options = dict(options or {})
        return resolved if options in (asked, resolved.to_options()) else None

    async def _resolve(self, options, max_age: float | None = None) -> ResolvedOptions:
        """`options` resolved (InvalidOptions if they cannot be granted), or this start's
        earlier resolution of them."""
        resolved = self._resolved_earlier(options, max_age)
        if resolved is None:
            options = dict(options or {})
            await self.load_policy(options.get("image"))
            validate_instance_name(self.name)
            resolved = resolve_options(options, self.policy, self.user.name)
            self._resolution = (options, resolved, time.monotonic())
        return resolved

    async def resolved_options(self, max_age: float | None = None) -> ResolvedOptions:
        """The instance's options with their image and flavor, resolved once per start (by
        apply_user_options, before start() and metering use them); HTTP 400 with the reason
        if they cannot be granted."""
        try:
            return await self._resolve(self.user_options, max_age)
        except InvalidOptions as e:
            raise web.HTTPError(400, str(e), reason=str(e)) from None

    def forget_resolution(self):
        """The start has ended: its next one resolves the options afresh."""
        self._resolution = None

    @default("options_form")
    def _default_options_form(self):
        return self._options_form

    async def _options_form(self, spawner=None):
        policy = await self.load_policy()
        saved = []
        if policy.saved_images is not None:
            saved = await asyncio.to_thread(policy.saved_images.available, self.user.name)
        return self._render_options_form(
            available=await self.available_images(),
            saved=saved,
            workspaces=await self.workspace_names(),
        )

    async def available_images(self) -> set[str] | None:
        """References of the images this backend can start now; None if it cannot tell."""
        return None

    def check_start_permission(self):
        """HTTP 403 unless the owner's roles grant starting instances (where the hub defines
        the platform's scopes), so every path that starts one (spawn page, hub API, platform
        API) is held to the same permission."""
        from jupyterhub import scopes

        if START_SCOPE not in scopes.scope_definitions:
            return
        orm_user = getattr(self.user, "orm_user", None)
        if orm_user is None or START_SCOPE in scopes.get_scopes_for(orm_user):
            return
        message = (
            f"Permission denied: starting instances needs {START_SCOPE}. "
            "Ask an administrator for a role that grants it."
        )
        raise web.HTTPError(403, message, reason=message)

    def _quotas(self):
        if self._quota_store is None and self.quota_limits is not None:
            self._quota_store = self.quota_limits()
        return self._quota_store

    async def admit_start(self, resolved: ResolvedOptions):
        """HTTP 403, naming the quota, its limit and what to do, unless starting this instance
        keeps its owner and its workspace within their quotas; else admit the start.

        The hub's spawn page, its REST API and the platform API all start instances through
        here, so this is the one check every start passes.
        """
        if self.quota_limits is None:
            return
        spec = resolved.spec
        try:
            store = self._quotas()
            limits = await asyncio.to_thread(store.limits, self.user.name)
            workspace_limits = await asyncio.to_thread(store.workspace_limits, spec.workspace)
        except Exception as e:
            self.log.error("%s: cannot read quotas: %s", self._log_name, e)
            message = "Quotas cannot be read right now. Try again in a minute."
            raise web.HTTPError(503, message, reason="Quotas unavailable") from None
        # no await from here on: counting and admitting are one step of the hub's event loop,
        # so concurrent starts of any path see each other (spawner.quotas)
        options, this, flavor = spec.to_options(), self.orm_spawner, resolved.flavor
        try:
            if any(workspace_limits.values()):
                others = self._workspace_instances(spec.workspace)
                usage = start_usage(this, options, others, self.policy, flavor)
                check_limits(workspace_limits, usage, f"workspace {spec.workspace}")
            usage = start_usage(this, options, self._own_instances(), self.policy, flavor)
            check_limits(limits, usage, self.user.name)
        except QuotaExceeded as e:
            self.log.warning("%s: start refused: %s", self._log_name, e)
            error = web.HTTPError(403, str(e), reason="Quota exceeded")
            # what the spawn page and the hub's API show, instead of "HTTP 403: ..."
            error.jupyterhub_message = str(e)
            raise error from None
        setattr(self, ADMITTED, this.server)

    def _own_instances(self):
        """(orm spawner, live spawner or None) of the owner's named servers."""
        for name, orm_spawner in self.user.orm_user.orm_spawners.items():
            yield orm_spawner, self.user.spawners.get(name)

    def _workspace_instances(self, workspace: str):
        """(orm spawner, live spawner or None) of every named server in a workspace."""
        from jupyterhub import orm

        users = self.user.settings.get("users") or {}
        # the hub's own database session, as JupyterHub's handlers use it: in the event loop
        for orm_spawner in self.user.db.query(orm.Spawner):
            options = orm_spawner.user_options or {}
            if (options.get("workspace") or DEFAULT_WORKSPACE) != workspace:
                continue
            # the hub keeps every user with something active in memory; the others run nothing
            user = dict.get(users, orm_spawner.user_id)
            yield orm_spawner, user.spawners.get(orm_spawner.name) if user else None

    def record_crash(self, *args, **kwargs):
        # the hub polls a start it refused before cleaning up: nothing ran, so nothing
        # crashed and nothing is to be restarted
        if self._start_refused:
            return
        super().record_crash(*args, **kwargs)

    @default("apply_user_options")
    def _default_apply_user_options(self):
        # JupyterHub calls this before start(), for every start: invalid options are refused
        # with a 400 there, starts past a quota with a 403; start() applies the options
        async def check(spawner, user_options):
            spawner._start_refused = True
            spawner.check_start_permission()
            # the one resolution of this start (or the spawn form's, made just before it):
            # start() and metering use it
            resolved = await spawner.resolved_options(max_age=FORM_RESOLUTION_SECONDS)
            await spawner.check_workspace(resolved.spec.workspace)
            await spawner.admit_start(resolved)
            if not spawner.orm_spawner.user_options:
                # an instance started without options keeps what it was started with, so it
                # counts as an instance (not a draft) once stopped
                spawner.orm_spawner.user_options = resolved.to_options()
            spawner._start_refused = False

        return check

    @default("options_from_form")
    def _default_options_from_form(self):
        return self._options_from_form

    async def _options_from_form(self, formdata):
        options = options_from_form(formdata)
        self.forget_resolution()
        try:
            # raise here so the spawn page shows the form again with the reason; the start
            # this form submits uses this resolution
            return (await self._resolve(options)).to_options()
        except InvalidOptions:
            # JupyterHub re-renders the form of the user's default spawner, not this
            # one: keep what was typed so that form shows it again
            _rejected_forms[self.user.name] = options
            raise

    def _render_options_form(
        self, available: set[str] | None = None, saved=(), workspaces=(DEFAULT_WORKSPACE,)
    ) -> str:
        current = _rejected_forms.pop(self.user.name, None) or dict(self.user_options or {})
        policy = self.policy
        image_name = current.get("image", policy.default_image)
        flavor_name = current.get("flavor", policy.default_flavor)

        def option(value, label, selected, disabled=False):
            return {"value": value, "label": label, "selected": selected, "disabled": disabled}

        images = []
        for e in policy.catalog:
            missing = available is not None and e.ref not in available
            label = f"{e.name}: {e.description}" + (" (not built)" if missing else "")
            images.append(option(e.name, label, e.name == image_name, missing))
        for image in saved:
            missing = available is not None and image.ref not in available
            label = f"saved: {image.owner}/{image.name}:{image.tag} (from {image.base})"
            label += f": {image.description}" if image.description else ""
            label += " (not on this machine)" if missing else ""
            images.append(option(image.saved_name, label, image.saved_name == image_name, missing))
        flavors = [
            option(f.name, f"{f.name}: {f.description}", f.name == flavor_name)
            for f in policy.visible_flavors()
        ]
        # the workspace is fixed once the instance was set up; else a choice among the
        # owner's workspaces, preselected from the page's #workspace= (the home page's)
        own = self.user_options or {}
        return render_template(
            __file__,
            "options_form.html",
            policy=policy,
            images=images,
            flavors=flavors,
            fixed_workspace=own.get("workspace") or (DEFAULT_WORKSPACE if own else None),
            workspaces=list(workspaces),
            chosen_workspace=current.get("workspace") or DEFAULT_WORKSPACE,
            storage=current.get("storage_gib", policy.storage_default_gib),
            work_dir=self.work_dir,
            description=current.get("description", ""),
            max_description=MAX_DESCRIPTION,
            auto_stop_fields=auto_stop_form_fields(current.get("auto_stop"), policy),
            ssh_fields=ssh_form_fields(current.get("ssh")),
        )

    _live_store = None

    def _live_options(self):
        if self._live_store is None and self.live_options is not None:
            self._live_store = self.live_options()
        return self._live_store

    async def run_post_stop_hook(self):
        """Fold the options changed during the run into the instance's own options (the
        hub's pages, its API and the next start read those), then run post_stop_hook."""
        store = self._live_options()
        if store is not None:
            try:
                live = await store.take(self.user.name, self.name)
            except Exception:  # noqa: BLE001 - the stop stands; the platform overlays them
                self.log.exception("%s: cannot fold its live options", self._log_name)
            else:
                if live:
                    # written with the stop's own commit, as the hub's PATCH does
                    self.orm_spawner.user_options = {**(self.user_options or {}), **live}
                    self.log.info("%s: options changed while running kept", self._log_name)
        result = super().run_post_stop_hook()
        if inspect.isawaitable(result):
            await result

    async def delete_forever(self):
        """Drop the options kept for the instance's runs, then the backend's cleanup."""
        store = self._live_options()
        if store is not None:
            try:
                await store.clear(self.user.name, self.name)
            except Exception:  # noqa: BLE001 - the backend's cleanup must still run
                self.log.exception("%s: cannot drop its live options", self._log_name)
        result = super().delete_forever()
        if inspect.isawaitable(result):
            await result

    async def rename(self, old_name, new_name):
        raise web.HTTPError(
            400,
            "Instances cannot be renamed: their storage is bound to the name. "
            "Create a new instance instead.",
        )

    # spawn progress: start() records events, progress() streams them to the spawn page

    def _progress_reset(self):
        self._progress_events = []
        self._progress_changed = asyncio.Event()
        self._progress_finished = False

    def _progress(self, percent: int, message: str):
        self.log.info("%s: %s", self._log_name, message)
        if not hasattr(self, "_progress_events"):
            self._progress_reset()
        self._progress_events.append({"progress": percent, "message": message})
        self._progress_changed.set()

    def _progress_done(self):
        if hasattr(self, "_progress_events"):
            self._progress_finished = True
            self._progress_changed.set()

    async def progress(self):
        """Yield the spawn's progress events as start() records them."""
        if not hasattr(self, "_progress_events"):
            self._progress_reset()
        sent = 0
        while True:
            # clear before reading: an event recorded after this sets it again
            self._progress_changed.clear()
            while sent < len(self._progress_events):
                yield self._progress_events[sent]
                sent += 1
            if self._progress_finished:
                return
            try:
                await asyncio.wait_for(self._progress_changed.wait(), timeout=1)
            except TimeoutError:
                pass
