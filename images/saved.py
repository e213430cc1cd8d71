"""Saved images: their names, references and labels, and what a commit keeps of an instance."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, replace

from workbench.names import image_name_problem, saved_name, split_saved_name, tag_problem
from workbench.names import is_saved_name as is_saved_name  # where the platform imports it

from .catalog import ImageEntry

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
    problem = image_name_problem(name)
    if problem:
        raise InvalidImage(problem)
    return name


def validate_tag(tag) -> str:
    problem = tag_problem(tag)
    if problem:
        raise InvalidImage(problem)
    return tag


def validate_description(description) -> str:
    description = description or ""
    if not isinstance(description, str):
        raise InvalidImage("'description' must be text.")
    if len(description) > MAX_DESCRIPTION:
        raise InvalidImage(f"The description is longer than {MAX_DESCRIPTION} characters.")
    return description.strip()


def parse_saved_name(value: str) -> tuple[str, str, str]:
    """(owner, name, tag) of saved:<owner>/<name>:<tag>; InvalidImage if malformed."""
    parts = split_saved_name(value)
    if parts is None:
        raise InvalidImage(
            f"Invalid saved image {value!r}: write saved:<owner>/<name>:<tag>, "
            "for example saved:alice/bert-env:v1."
        )
    return parts


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


# --- what a save must not keep ------------------------------------------------------------------

# files jupyter_server writes while it runs: its token (jpserver-<pid>.json and the -open.html
# page), its cookie secret, and anything else in a Jupyter runtime folder (kernels' keys)
RUNTIME_FILE_RE = re.compile(
    r"(?:^|/)(?:(?:jp|nb)server-\d+(?:-open\.html|\.json)|jupyter_cookie_secret)$"
    r"|/jupyter/runtime/[^/]+$"
)
# environment variables whose values are secrets (tokens, passwords)
SECRET_ENV_RE = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD", re.IGNORECASE)
MIN_SECRET_LENGTH = 8
# the docker/podman kinds of a container's changes
CHANGE_MODIFIED, CHANGE_ADDED, CHANGE_DELETED = 0, 1, 2


def is_runtime_file(path: str) -> bool:
    """Whether a path is one of jupyter_server's runtime files (token, cookie secret)."""
    return bool(RUNTIME_FILE_RE.search(path))


def environment_secrets(env: list[str] | None, what: str) -> dict[str, str]:
    """The secrets among KEY=value items: {value: "<what>'s KEY"}."""
    secrets = {}
    for item in env or []:
        key, _, value = item.partition("=")
        if SECRET_ENV_RE.search(key) and len(value) >= MIN_SECRET_LENGTH:
            if value not in secrets or key.startswith("JUPYTERHUB_"):
                secrets[value] = f"{what}'s {key}"
    return secrets


def _parents(path: str):
    while path not in ("/", ""):
        path = path.rsplit("/", 1)[0] or "/"
        yield path


def scan_roots(changes: list[dict]) -> list[tuple[str, bool]]:
    """The fewest (path, added) whose archives hold every file a container's changes added
    or modified; a modified folder is left out when its changed entries are listed."""
    added = {c["Path"] for c in changes if c.get("Kind") == CHANGE_ADDED}
    kept = {c["Path"]: c.get("Kind") for c in changes if c.get("Kind") != CHANGE_DELETED}
    listed_parents = {p for path in kept for p in _parents(path)}
    roots = []
    for path, kind in sorted(kept.items()):
        if any(p in added for p in _parents(path)):
            continue  # inside a new folder, which is read whole
        if kind != CHANGE_ADDED and path in listed_parents:
            continue  # a modified folder: its changes are listed on their own
        roots.append((path, kind == CHANGE_ADDED))
    return roots


def find_secret(fileobj, secrets: dict[bytes, str], chunk_size: int = 1 << 20) -> str | None:
    """What the first secret found in a file-like object's bytes is, or None."""
    if not secrets:
        return None
    keep = max(len(s) for s in secrets) - 1
    tail = b""
    while chunk := fileobj.read(chunk_size):
        data = tail + chunk
        for secret, what in secrets.items():
            if secret in data:
                return what
        tail = data[-keep:] if keep else b""
    return None


def scan_archive(
    fileobj, folder: str, secrets: dict[bytes, str], limit: int = 20
) -> list[tuple[str, str]]:
    """(path, why) of the runtime files and files holding a secret in a tar stream whose
    entries lie under `folder`; at most `limit`."""
    import tarfile

    found = []
    with tarfile.open(fileobj=fileobj, mode="r|") as tar:
        for member in tar:
            path = f"{folder.rstrip('/')}/{member.name.removeprefix('./')}"
            if is_runtime_file(path) and not member.isdir():
                found.append((path, "a Jupyter runtime file"))
            elif member.isreg():
                what = find_secret(tar.extractfile(member), secrets)
                if what:
                    found.append((path, f"holds {what}"))
            if len(found) >= limit:
                break
    return found


# --- pulls --------------------------------------------------------------------------------------

OWNER_SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9._-]*[a-z0-9])?$")


def parse_pushed_ref(ref, registry: str, namespace: str) -> tuple[str, str, str, str]:
    """(reference, owner slug, name, tag) of <registry>/<namespace>/<owner>/<name>[:<tag>],
    the reference spelt with the configured registry; InvalidImage for anything else."""
    prefix = f"{registry.rstrip('/')}/{namespace}/"
    example = f"{prefix}<user>/<name>:<tag>"
    if not isinstance(ref, str) or not ref.lower().startswith(prefix.lower()) or "@" in ref:
        raise InvalidImage(
            f"Images are pulled only from the configured registry's saved images: send 'ref' "
            f"as {example}."
        )
    owner, _, name_tag = ref[len(prefix) :].partition("/")
    name, sep, tag = name_tag.partition(":")
    if not OWNER_SLUG_RE.match(owner) or "/" in name_tag:
        raise InvalidImage(f"{ref!r} is not a saved image's reference: write {example}.")
    validate_image_name(name)
    tag = validate_tag(tag if sep else "latest")
    return f"{prefix}{owner}/{name}:{tag}", owner, name, tag
