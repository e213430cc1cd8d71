"""Saved images: their names, references and labels, and what a commit keeps of an instance."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, replace

from .catalog import ImageEntry

SAVED_PREFIX = "saved:"
IMAGE_NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?$")
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
MAX_DESCRIPTION = 512
LABEL = "ai-workbench.saved"
# labels the instance's container carries; a commit would copy them into the image
INSTANCE_LABELS = (
    "ai-workbench.user",
    "ai-workbench.instance",
    "ai-workbench.image",
    "ai-workbench.flavor",
    "ai-workbench.storage-gib",
)


class InvalidImage(ValueError):
    """A saved image's name, tag or description cannot be used; the message says why."""


def validate_image_name(name) -> str:
    if not isinstance(name, str) or not name:
        raise InvalidImage("A saved image needs a name, for example 'bert-env'.")
    if not IMAGE_NAME_RE.match(name):
        raise InvalidImage(
            f"Invalid image name {name!r}: use 1 to 64 lower-case letters, digits, '.', '_' "
            "and '-', starting and ending with a letter or digit (for example 'bert-env')."
        )
    return name


def validate_tag(tag) -> str:
    if not isinstance(tag, str) or not TAG_RE.match(tag):
        raise InvalidImage(
            f"Invalid tag {tag!r}: use 1 to 128 letters, digits, '_', '.' and '-', not "
            "starting with '.' or '-' (for example 'v1')."
        )
    return tag


def validate_description(description) -> str:
    description = description or ""
    if not isinstance(description, str):
        raise InvalidImage("'description' must be text.")
    if len(description) > MAX_DESCRIPTION:
        raise InvalidImage(f"The description is longer than {MAX_DESCRIPTION} characters.")
    return description.strip()


def saved_name(owner: str, name: str, tag: str) -> str:
    """The name instances use for a saved image: saved:<owner>/<name>:<tag>."""
    return f"{SAVED_PREFIX}{owner}/{name}:{tag}"


def is_saved_name(value) -> bool:
    return isinstance(value, str) and value.startswith(SAVED_PREFIX)


def parse_saved_name(value: str) -> tuple[str, str, str]:
    """(owner, name, tag) of saved:<owner>/<name>:<tag>; InvalidImage if malformed."""
    rest = value[len(SAVED_PREFIX) :] if is_saved_name(value) else ""
    owner, _, name_tag = rest.rpartition("/")
    name, _, tag = name_tag.partition(":")
    if not owner or not name or not tag:
        raise InvalidImage(
            f"Invalid saved image {value!r}: write saved:<owner>/<name>:<tag>, "
            "for example saved:alice/bert-env:v1."
        )
    return owner, name, tag


def owner_slug(owner: str) -> str:
    """A repository path component for a user name (names like e-mail addresses included)."""
    slug = re.sub(r"[^a-z0-9._-]+", "-", owner.lower()).strip("._-") or "user"
    if slug != owner:
        slug = f"{slug[:40]}-{hashlib.sha256(owner.encode()).hexdigest()[:8]}"
    return slug


def saved_repository(registry: str, namespace: str, owner: str, name: str) -> str:
    """<registry><namespace>/<owner>/<name>, e.g. localhost/workbench-saved/alice/bert-env."""
    if registry and not registry.endswith("/"):
        registry += "/"
    return f"{registry}{namespace}/{owner_slug(owner)}/{name}"


@dataclass(frozen=True)
class SavedImage:
    """A saved image as instances see it: where it is and the catalog image it came from."""

    owner: str
    name: str
    tag: str
    ref: str
    base: str  # catalog name of the preset image it was saved from
    description: str = ""

    @property
    def saved_name(self) -> str:
        return saved_name(self.owner, self.name, self.tag)

    def entry(self, base: ImageEntry) -> ImageEntry:
        """The catalog entry instances start: the base's environments, this image's ref."""
        repository, _, tag = self.ref.rpartition(":")
        return replace(
            base,
            name=self.saved_name,
            repository=repository,
            tag=tag,
            description=self.description or f"saved from {base.name}",
            base=base.name,
        )


def make_saved_labels(
    *, owner: str, instance: str, base: str, description: str, name: str, tag: str
) -> dict[str, str]:
    """Labels of a saved image: who saved it, from which instance and preset image."""
    return {
        f"{LABEL}.owner": owner,
        f"{LABEL}.name": name,
        f"{LABEL}.tag": tag,
        f"{LABEL}.source-instance": instance,
        f"{LABEL}.base-image": base,
        f"{LABEL}.description": description,
    }


def _quote(value: str) -> str:
    return json.dumps(value)


def make_commit_changes(base_config: dict, container_config: dict, labels: dict) -> list[str]:
    """Dockerfile instructions that give a commit the base image's configuration back.

    The spawner creates each instance's container with its own command, user, working
    folder, labels and environment (among it the instance's API token). A commit copies all
    of that into the image; neither Docker nor Podman can drop a variable or label in a
    commit, so those the base image lacks are set empty, and the rest get the base's values.
    """
    changes = []
    base_env = dict(e.split("=", 1) for e in base_config.get("Env") or [] if "=" in e)
    for item in container_config.get("Env") or []:
        key = item.split("=", 1)[0]
        if key not in base_env:
            changes.append(f"ENV {key}=")
    for key, value in base_env.items():
        changes.append(f"ENV {key}={_quote(value)}")
    changes.append(f"CMD {json.dumps(base_config.get('Cmd') or [])}")
    changes.append(f"ENTRYPOINT {json.dumps(base_config.get('Entrypoint') or [])}")
    changes.append(f"USER {base_config.get('User') or 'root'}")
    changes.append(f"WORKDIR {base_config.get('WorkingDir') or '/'}")
    base_labels = base_config.get("Labels") or {}
    for key in (container_config.get("Labels") or {}).keys() - base_labels.keys() - labels.keys():
        changes.append(f"LABEL {key}=")
    for key, value in labels.items():
        changes.append(f"LABEL {key}={_quote(value)}")
    return changes
