"""Instance options: validating what a user asks for (name, image, flavor, storage)."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from images.catalog import Catalog, ImageEntry, UnknownImage, load_catalog

from .flavors import Flavor, UnknownFlavor, get_flavor, load_flavors

INSTANCE_NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$")
MAX_DESCRIPTION = 512
OPTION_KEYS = ("image", "flavor", "storage_gib", "description")


class InvalidOptions(ValueError):
    """What the user asked for cannot be granted; the message says why and what to do."""


def validate_instance_name(name: str) -> str:
    """The name itself if it is a valid instance name, else InvalidOptions."""
    if not isinstance(name, str) or not name:
        raise InvalidOptions("An instance needs a name, for example 'my-notebook'.")
    if not INSTANCE_NAME_RE.match(name):
        raise InvalidOptions(
            f"Invalid instance name {name!r}: use 1 to 32 lower-case letters, digits and '-', "
            "starting and ending with a letter or digit (for example 'bert-finetune')."
        )
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

    def image(self, name: str) -> ImageEntry:
        """The catalog image of that name, or InvalidOptions."""
        try:
            return self.catalog.get(name)
        except UnknownImage as e:
            raise InvalidOptions(str(e)) from None


def make_policy(
    *,
    catalog_path: str = "",
    flavors_path: str = "",
    image_registry: str = "localhost/",
    default_image: str,
    default_flavor: str,
    allowed_flavors=(),
    storage_min_gib: int,
    storage_max_gib: int,
    storage_default_gib: int,
    **_ignored,
) -> InstancePolicy:
    """The policy from spawner settings (the same keys as the spawners' traits)."""
    return InstancePolicy(
        catalog=load_catalog(catalog_path or None, registry=image_registry),
        flavors=load_flavors(flavors_path or None),
        default_image=default_image,
        default_flavor=default_flavor,
        storage_min_gib=storage_min_gib,
        storage_max_gib=storage_max_gib,
        storage_default_gib=storage_default_gib,
        allowed_flavors=tuple(allowed_flavors),
    )


@dataclass(frozen=True)
class InstanceSpec:
    """A validated instance: what it runs (image), how big (flavor), how much storage."""

    image: str
    flavor: str
    storage_gib: int
    description: str = ""

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


def parse_options(raw: dict | None, policy: InstancePolicy) -> InstanceSpec:
    """A validated InstanceSpec from user_options (defaults filled in), or InvalidOptions."""
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
    policy.image(image)
    policy.flavor(flavor)
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
    )


def options_from_form(formdata: dict[str, list[str]]) -> dict:
    """user_options from the spawn page's form fields (each a list of strings)."""
    options = {}
    for key in OPTION_KEYS:
        values = formdata.get(key)
        if values and values[0].strip():
            options[key] = values[0].strip()
    return options
