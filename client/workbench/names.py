"""The names the platform accepts: instances, workspaces, saved images and their tags.

One set of patterns for the platform (instance options, saved images) and the panel's
server extension, which checks a save's name and tag before the platform does. Each
*_problem() function answers None for a good value, else the message that says what to do.
"""

from __future__ import annotations

import re

# instance names are DNS labels (they name containers, volumes and pods): at most 32
INSTANCE_NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$")
# workspace names have the same syntax
WORKSPACE_NAME_RE = INSTANCE_NAME_RE
# job names are DNS labels too (they name containers, networks and pods): at most 32
JOB_NAME_RE = INSTANCE_NAME_RE
# a saved image's name: one OCI repository path component, at most 64
IMAGE_NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?$")
# an OCI tag
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
# how instances name a saved image: saved:<owner>/<name>:<tag>
SAVED_PREFIX = "saved:"


def instance_name_problem(name) -> str | None:
    if not isinstance(name, str) or not name:
        return "An instance needs a name, for example 'my-notebook'."
    if not INSTANCE_NAME_RE.match(name):
        return (
            f"Invalid instance name {name!r}: use 1 to 32 lower-case letters, digits and '-', "
            "starting and ending with a letter or digit (for example 'bert-finetune')."
        )
    return None


def job_name_problem(name) -> str | None:
    if not isinstance(name, str) or not name:
        return "A job needs a name, for example 'mnist-train'."
    if not JOB_NAME_RE.match(name):
        return (
            f"Invalid job name {name!r}: use 1 to 32 lower-case letters, digits and '-', "
            "starting and ending with a letter or digit (for example 'mnist-train')."
        )
    return None


def workspace_name_problem(name) -> str | None:
    if not isinstance(name, str) or not WORKSPACE_NAME_RE.match(name):
        return f"Invalid workspace name {name!r}: use lower-case letters, digits and '-'."
    return None


def image_name_problem(name) -> str | None:
    if not isinstance(name, str) or not name:
        return "A saved image needs a name, for example 'bert-env'."
    if not IMAGE_NAME_RE.match(name):
        return (
            f"Invalid image name {name!r}: use 1 to 64 lower-case letters, digits, '.', '_' "
            "and '-', starting and ending with a letter or digit (for example 'bert-env')."
        )
    return None


def tag_problem(tag) -> str | None:
    if not isinstance(tag, str) or not TAG_RE.match(tag):
        return (
            f"Invalid tag {tag!r}: use 1 to 128 letters, digits, '_', '.' and '-', not "
            "starting with '.' or '-' (for example 'v1')."
        )
    return None


def saved_name(owner: str, name: str, tag: str) -> str:
    """The name instances use for a saved image: saved:<owner>/<name>:<tag>."""
    return f"{SAVED_PREFIX}{owner}/{name}:{tag}"


def is_saved_name(value) -> bool:
    return isinstance(value, str) and value.startswith(SAVED_PREFIX)


def split_saved_name(value) -> tuple[str, str, str] | None:
    """(owner, name, tag) of saved:<owner>/<name>:<tag>; None if it is not one."""
    rest = value[len(SAVED_PREFIX) :] if is_saved_name(value) else ""
    owner, _, name_tag = rest.rpartition("/")
    name, _, tag = name_tag.partition(":")
    if not owner or not name or not tag:
        return None
    return owner, name, tag
