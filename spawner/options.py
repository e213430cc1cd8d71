"""Instance options: validating what a user asks for (name, image, flavor, storage, SSH,
auto-stop)."""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import asdict, dataclass, field

from workbench.names import instance_name_problem, workspace_name_problem

from images.catalog import Catalog, ImageEntry, UnknownImage, load_catalog
from images.saved import InvalidImage, is_saved_name, parse_saved_name

from .flavors import Flavor, UnknownFlavor, get_flavor, load_flavors

MAX_DESCRIPTION = 512
OPTION_KEYS = ("image", "flavor", "storage_gib", "description", "ssh", "auto_stop", "workspace")
# options fixed when the instance is created
FIXED_OPTION_KEYS = ("storage_gib", "workspace")
DEFAULT_WORKSPACE = "default"
# options applied to a running instance without restarting it
LIVE_OPTION_KEYS = ("description", "ssh", "auto_stop")
MAX_ALLOWLIST = 64


class InvalidOptions(ValueError):
    """What the user asked for cannot be granted; the message says why and what to do."""


def validate_instance_name(name: str) -> str:
    """The name itself if it is a valid instance name, else InvalidOptions."""
    problem = instance_name_problem(name)
    if problem:
        raise InvalidOptions(problem)
    return name


@dataclass(frozen=True)
class InstancePolicy:
    """What instances may be made of: the catalog, the flavors and the storage bounds."""

    catalog: Catalog
    flavors: dict[str, Flavor]
    default_image: str
    default_flavor: str
    storage_min_gib: int = 1
    storage_max_gib: int = 100
    storage_default_gib: int = 10
    allowed_flavors: tuple[str, ...] = field(default_factory=tuple)
    idle_stop_default_minutes: int = 60
    idle_stop_min_minutes: float = 1
    idle_stop_max_minutes: int = 7 * 24 * 60
    max_runtime_max_hours: float = 7 * 24

    # saved images: an object with lookup(user, name) -> images.saved.SavedImage | None
    # (blocking; see prefetch) and available(user) -> [SavedImage]; None: no saved images
    saved_images: object = field(default=None, compare=False, repr=False)

    def visible_flavors(self) -> list[Flavor]:
        """The flavors users may pick, in definition order."""
        if not self.allowed_flavors:
            return list(self.flavors.values())
        return [f for f in self.flavors.values() if f.name in self.allowed_flavors]

    def flavor(self, name: str) -> Flavor:
        """The allowed flavor of that name, or InvalidOptions."""
        names = [f.name for f in self.visible_flavors()]
        if name not in names:
            raise InvalidOptions(str(UnknownFlavor(name, names)))
        return get_flavor(self.flavors, name)

    def image(self, name: str, user: str | None = None) -> ImageEntry:
        """The catalog image of that name, or the saved image (saved:<owner>/<name>:<tag>)
        that `user` may use, as a catalog entry with its base's environments; else
        InvalidOptions."""
        if is_saved_name(name):
            return self._saved_image(name, user)
        try:
            return self.catalog.get(name)
        except UnknownImage as e:
            raise InvalidOptions(str(e)) from None

    def _saved_image(self, name: str, user: str | None) -> ImageEntry:
        try:
            parse_saved_name(name)
        except InvalidImage as e:
            raise InvalidOptions(str(e)) from None
        saved = self.saved_images.lookup(user, name) if self.saved_images and user else None
        if saved is None:
            raise InvalidOptions(
                f"Unknown saved image {name!r}, or not shared with you: its owner may have "
                "deleted it or stopped sharing it. `workbench images list` (GET /api/images) "
                "shows the images you may use; switch an instance to one of them with "
                "`workbench instances switch NAME --image IMAGE`."
            )
        try:
            return saved.entry(self.catalog.get(saved.base))
        except UnknownImage:
            raise InvalidOptions(
                f"Saved image {name!r} was saved from {saved.base!r}, which the catalog no "
                "longer has."
            ) from None

    async def prefetch(self, user: str | None, name) -> None:
        """Look a saved image up in a worker thread, so image() answers without blocking."""
        if self.saved_images and user and is_saved_name(name):
            import asyncio

            try:
                await asyncio.to_thread(self.saved_images.lookup, user, name)
            except InvalidImage:
                pass  # image() says why


_saved_image_stores: dict = {}


def make_policy(
    *,
    catalog_path: str = "",
    flavors_path: str = "",
    image_registry: str = "localhost/",
    default_image: str,
    idle_stop_default_minutes: int = 60,
    idle_stop_min_minutes: float = 1,
    idle_stop_max_minutes: int = 7 * 24 * 60,
    max_runtime_max_hours: float = 7 * 24,
    default_flavor: str,
    saved_images=None,
    allowed_flavors=(),
    storage_min_gib: int,
    storage_max_gib: int,
    storage_default_gib: int,
    **_ignored,
) -> InstancePolicy:
    """The policy from spawner settings (the same keys as the spawners' traits)."""
    if callable(saved_images) and not hasattr(saved_images, "lookup"):
        # a factory (configuration holds no live objects): one store per process
        saved_images = _saved_image_stores.setdefault(saved_images, saved_images())
    return InstancePolicy(
        catalog=load_catalog(catalog_path or None, registry=image_registry),
        flavors=load_flavors(flavors_path or None),
        default_image=default_image,
        default_flavor=default_flavor,
        storage_min_gib=storage_min_gib,
        storage_max_gib=storage_max_gib,
        storage_default_gib=storage_default_gib,
        allowed_flavors=tuple(allowed_flavors),
        idle_stop_default_minutes=idle_stop_default_minutes,
        idle_stop_min_minutes=idle_stop_min_minutes,
        idle_stop_max_minutes=idle_stop_max_minutes,
        max_runtime_max_hours=max_runtime_max_hours,
        saved_images=saved_images,
    )


@dataclass(frozen=True)
class InstanceSpec:
    """A validated instance: what it runs (image), how big (flavor), how much storage."""

    image: str
    flavor: str
    storage_gib: int
    description: str = ""
    ssh: dict = field(default_factory=lambda: {"enabled": False, "allowlist": []})
    auto_stop: dict = field(default_factory=dict)
    workspace: str = DEFAULT_WORKSPACE

    def to_options(self) -> dict:
        """The user_options JupyterHub stores for the instance."""
        return asdict(self)


def _storage(value, policy: InstancePolicy) -> int:
    if value is None or value == "":
        return policy.storage_default_gib
    try:
        gib = int(str(value).strip().removesuffix("Gi").removesuffix("GiB"))
    except ValueError:
        raise InvalidOptions(
            f"Storage size {value!r} is not a whole number of GiB (for example 20)."
        ) from None
    if not policy.storage_min_gib <= gib <= policy.storage_max_gib:
        raise InvalidOptions(
            f"Storage size {gib} GiB is out of range: choose between "
            f"{policy.storage_min_gib} and {policy.storage_max_gib} GiB."
        )
    return gib


def parse_ssh(value) -> dict:
    """SSH settings {"enabled": bool, "allowlist": [CIDR, ...]} (empty allowlist: any address)."""
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise InvalidOptions('\'ssh\' must be an object like {"enabled": true, "allowlist": []}.')
    unknown = sorted(set(value) - {"enabled", "allowlist"})
    if unknown:
        raise InvalidOptions(
            f"Unknown SSH setting(s): {', '.join(unknown)}; known: allowlist, enabled."
        )
    enabled = value.get("enabled", False)
    if not isinstance(enabled, bool):
        raise InvalidOptions("'ssh.enabled' must be true or false.")
    allowlist = value.get("allowlist") or []
    if isinstance(allowlist, str):
        allowlist = [a for a in re.split(r"[\s,]+", allowlist) if a]
    if not isinstance(allowlist, list):
        raise InvalidOptions("'ssh.allowlist' must be a list of addresses or CIDRs.")
    if len(allowlist) > MAX_ALLOWLIST:
        raise InvalidOptions(f"'ssh.allowlist' has more than {MAX_ALLOWLIST} entries.")
    networks = []
    for entry in allowlist:
        try:
            network = ipaddress.ip_network(str(entry).strip(), strict=False)
        except ValueError:
            raise InvalidOptions(
                f"{entry!r} in the SSH allowlist is not an IP address or CIDR "
                "(for example 203.0.113.7 or 10.0.0.0/8)."
            ) from None
        if str(network) not in networks:
            networks.append(str(network))
    return {"enabled": enabled, "allowlist": networks}


def _number(value, what: str, kind=int):
    """A finite number from a JSON number or a form field's text; NaN and infinities are
    refused (every comparison with NaN is false, so no range check would catch it)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InvalidOptions(f"{what} must be a number.")
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise InvalidOptions(f"{what} must be a number, not {value!r}.") from None
    if not math.isfinite(number):
        raise InvalidOptions(f"{what} must be a finite number, not {value!r}.")
    if kind is int:
        if not number.is_integer():
            raise InvalidOptions(f"{what} must be a whole number.")
        return int(number)
    return kind(number)


def parse_auto_stop(value, policy: InstancePolicy) -> dict:
    """Auto-stop settings {"idle_minutes": N (0: never), "max_hours": H (0: no fixed stop)}."""
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise InvalidOptions(
            '\'auto_stop\' must be an object like {"idle_minutes": 60, "max_hours": 0}.'
        )
    unknown = sorted(set(value) - {"idle_minutes", "max_hours"})
    if unknown:
        raise InvalidOptions(
            f"Unknown auto-stop setting(s): {', '.join(unknown)}; known: idle_minutes, max_hours."
        )
    idle = value.get("idle_minutes")
    if idle in (None, ""):
        idle = policy.idle_stop_default_minutes
    else:
        idle = _number(idle, "idle_minutes", float)
        idle = int(idle) if idle.is_integer() else idle
    if idle != 0 and not policy.idle_stop_min_minutes <= idle <= policy.idle_stop_max_minutes:
        raise InvalidOptions(
            f"Idle stop after {idle:g} minutes is out of range: choose 0 (never) or between "
            f"{policy.idle_stop_min_minutes:g} and {policy.idle_stop_max_minutes} minutes."
        )
    hours = value.get("max_hours")
    hours = 0 if hours in (None, "") else _number(hours, "max_hours", float)
    if hours < 0 or hours > policy.max_runtime_max_hours:
        raise InvalidOptions(
            f"A fixed stop after {hours:g} hours is out of range: choose 0 (none) or up to "
            f"{policy.max_runtime_max_hours:g} hours."
        )
    return {"idle_minutes": idle, "max_hours": hours}


def parse_workspace(value) -> str:
    """The workspace an instance belongs to (its name's syntax; membership is checked by the
    platform)."""
    if value in (None, ""):
        return DEFAULT_WORKSPACE
    problem = workspace_name_problem(value)
    if problem:
        raise InvalidOptions(problem)
    return value


@dataclass(frozen=True)
class ResolvedOptions:
    """An instance's options, validated, with the image and flavor they name looked up: made
    once per request (resolve_options) and handed down to what builds the instance."""

    spec: InstanceSpec
    image: ImageEntry
    flavor: Flavor

    def to_options(self) -> dict:
        """The user_options JupyterHub stores for the instance."""
        return self.spec.to_options()


def normalize_options(raw: dict | None, policy: InstancePolicy) -> InstanceSpec:
    """The InstanceSpec of user_options, defaults filled in and every value checked except
    whether its image and flavor exist (resolve_options looks those up); else InvalidOptions."""
    raw = dict(raw or {})
    unknown = sorted(set(raw) - set(OPTION_KEYS))
    if unknown:
        raise InvalidOptions(
            f"Unknown instance option(s): {', '.join(unknown)}. "
            f"Known options: {', '.join(OPTION_KEYS)}."
        )
    image = raw.get("image") or policy.default_image
    flavor = raw.get("flavor") or policy.default_flavor
    if not isinstance(image, str) or not isinstance(flavor, str):
        raise InvalidOptions("'image' and 'flavor' must be names (strings).")
    description = raw.get("description") or ""
    if not isinstance(description, str):
        raise InvalidOptions("'description' must be text.")
    if len(description) > MAX_DESCRIPTION:
        raise InvalidOptions(f"The description is longer than {MAX_DESCRIPTION} characters.")
    return InstanceSpec(
        image=image,
        flavor=flavor,
        storage_gib=_storage(raw.get("storage_gib"), policy),
        description=description.strip(),
        ssh=parse_ssh(raw.get("ssh")),
        auto_stop=parse_auto_stop(raw.get("auto_stop"), policy),
        workspace=parse_workspace(raw.get("workspace")),
    )


def resolve_options(
    raw: dict | None, policy: InstancePolicy, user: str | None = None
) -> ResolvedOptions:
    """Validated user_options with their image and flavor looked up, or InvalidOptions.

    `user` is who starts the instance: saved images are checked against their shares. The
    one place an instance's image and flavor are resolved: callers pass the result on.
    """
    spec = normalize_options(raw, policy)
    image = policy.image(spec.image, user)
    flavor = policy.flavor(spec.flavor)
    return ResolvedOptions(spec=spec, image=image, flavor=flavor)


def parse_options(
    raw: dict | None, policy: InstancePolicy, user: str | None = None
) -> InstanceSpec:
    """The validated InstanceSpec of user_options (resolve_options without its lookups'
    results), or InvalidOptions."""
    return resolve_options(raw, policy, user).spec


def options_from_form(formdata: dict[str, list[str]]) -> dict:
    """user_options from the spawn page's form fields (each a list of strings).

    SSH and auto-stop settings come as flat fields: ssh_enabled (a checkbox), ssh_allowlist
    (addresses separated by spaces, commas or lines), idle_minutes, max_hours.
    """

    def first(key):
        values = formdata.get(key)
        return values[0].strip() if values and values[0].strip() else None

    options = {}
    for key in ("image", "flavor", "storage_gib", "description", "workspace"):
        if first(key) is not None:
            options[key] = first(key)
    if "ssh_enabled" in formdata or first("ssh_allowlist"):
        options["ssh"] = {
            "enabled": first("ssh_enabled") in ("on", "true", "1"),
            "allowlist": first("ssh_allowlist") or [],
        }
    auto_stop = {key: first(key) for key in ("idle_minutes", "max_hours") if first(key)}
    if auto_stop:
        options["auto_stop"] = auto_stop
    return options
