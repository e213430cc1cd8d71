"""A model version's files on the platform's machine: copied without following links, hashed.

<data>/models/<owner>/<model>/<version>/ holds a version's files, immutable once the version
is ready; their SHA-256s are kept in the database. Files arrive in a staging folder
(<data>/models/.staging/<token>, on the same file system) and are moved into place in one
rename, so a failed copy leaves nothing in the models' folders. Every walk here opens each
folder and file relative to its parent without following symbolic links, and refuses links,
devices, pipes and sockets by name instead of skipping them.
"""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
import shutil
import stat
from pathlib import Path, PurePosixPath

from spawner.container import user_folder_name

CHUNK = 1024 * 1024
MAX_DEPTH = 64
MAX_FILES = 100_000
STAGING = ".staging"
# a directory opened for reading its entries, never through a link
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK


class ModelFilesError(ValueError):
    """What a source holds cannot be a model's files (a link, a device, too big); the message
    names the file and says why."""


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _refused(rel: PurePosixPath, mode: int) -> ModelFilesError:
    return ModelFilesError(
        f"{str(rel)!r} is {_kind(mode)}: a model's files are copied as they are, without "
        "following links; replace it with the file itself."
    )


class _Walk:
    """One walk over a tree of regular files and folders below an open folder."""

    def __init__(self, limit: int | None, dest: Path | None):
        self.limit = limit
        self.dest = dest
        self.total = 0
        self.files: list[dict] = []

    def _count(self, rel: PurePosixPath, size: int) -> None:
        self.total += size
        if self.limit is not None and self.total > self.limit:
            raise ModelFilesError(
                f"The model is larger than the {self.limit // 1024**2} MiB a model may be "
                f"(at {str(rel)!r}): leave data and checkpoints out of its folder."
            )
        if len(self.files) >= MAX_FILES:
            raise ModelFilesError(f"The model holds more than {MAX_FILES} files.")

    def file(self, fd: int, rel: PurePosixPath) -> None:
        """Hash one open regular file (and copy it into dest, where there is one)."""
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _refused(rel, st.st_mode)
        self._count(rel, st.st_size)
        digest = hashlib.sha256()
        size = 0
        out = None
        if self.dest is not None:
            target = self.dest.joinpath(*rel.parts)
            out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        try:
            while chunk := os.read(fd, CHUNK):
                size += len(chunk)
                if size > st.st_size:
                    self._count(rel, len(chunk))  # it grows while read
                digest.update(chunk)
                if out is not None:
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(out, view) :]
        finally:
            if out is not None:
                os.close(out)
        self.files.append({"path": str(rel), "size": size, "sha256": digest.hexdigest()})

    def folder(self, fd: int, rel: PurePosixPath, depth: int = 0) -> None:
        """Every entry below an open folder, in name order; rel: its path in the model."""
        if depth > MAX_DEPTH:
            raise ModelFilesError(f"{str(rel)!r} is nested more than {MAX_DEPTH} folders deep.")
        for name in sorted(os.listdir(fd)):
            child = rel / name
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                sub = _open(name, DIR_FLAGS, fd, child)
                try:
                    if self.dest is not None:
                        self.dest.joinpath(*child.parts).mkdir(mode=0o755)
                    self.folder(sub, child, depth + 1)
                finally:
                    os.close(sub)
            elif stat.S_ISREG(st.st_mode):
                sub = _open(name, FILE_FLAGS, fd, child)
                try:
                    self.file(sub, child)
                finally:
                    os.close(sub)
            else:
                raise _refused(child, st.st_mode)


def _open(name: str, flags: int, dir_fd: int, rel: PurePosixPath) -> int:
    try:
        return os.open(name, flags, dir_fd=dir_fd)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise _refused(rel, stat.S_IFLNK) from None
        if e.errno in (errno.EACCES, errno.EPERM):
            raise ModelFilesError(f"{str(rel)!r} cannot be read (permission denied).") from None
        raise


def open_below(base: Path, rel: PurePosixPath) -> int:
    """An fd of base/rel opened without following any link on the way (and without waiting
    on a pipe); FileNotFoundError when there is nothing there; ModelFilesError for a link."""
    fd = os.open(base, DIR_FLAGS)
    try:
        for i, part in enumerate(rel.parts):
            last = i == len(rel.parts) - 1
            new = _open(
                part, FILE_FLAGS if last else DIR_FLAGS, fd, PurePosixPath(*rel.parts[: i + 1])
            )
            os.close(fd)
            fd = new
    except NotADirectoryError:
        os.close(fd)
        raise FileNotFoundError(str(rel)) from None
    except BaseException:
        os.close(fd)
        raise
    return fd


def copy_from_fd(fd: int, dest: Path, limit: int | None, name: str = "") -> list[dict]:
    """Copy what an open folder holds (or an open regular file, as dest/<name>) into the
    empty folder dest, hashing on the way; the files' manifest [{path, size, sha256}]."""
    walk = _Walk(limit, dest)
    if stat.S_ISDIR(os.fstat(fd).st_mode):
        walk.folder(fd, PurePosixPath())
    else:
        walk.file(fd, PurePosixPath(name))
    return sorted(walk.files, key=lambda f: f["path"])


def hash_tree(path: Path, limit: int | None = None) -> list[dict]:
    """The manifest of the files below a folder, refusing links, devices, pipes, sockets."""
    try:
        fd = os.open(path, DIR_FLAGS)
    except FileNotFoundError:
        return []
    try:
        walk = _Walk(limit, None)
        walk.folder(fd, PurePosixPath())
    finally:
        os.close(fd)
    return sorted(walk.files, key=lambda f: f["path"])


def differences(path: Path, manifest: list[dict]) -> str | None:
    """How the files below path differ from the manifest ("file 'x' changed since
    registration (it is missing)"), or None. Sizes are compared first, so a changed size
    costs no hashing."""
    try:
        current = {f["path"]: f for f in hash_tree(path)}
    except ModelFilesError as e:
        return f"the files changed since registration ({e})"
    for entry in manifest:
        now = current.pop(entry["path"], None)
        how = ""
        if now is None:
            how = "it is missing"
        elif now["size"] != entry["size"]:
            how = f"{entry['size']} bytes then, {now['size']} now"
        elif now["sha256"] != entry["sha256"]:
            how = "its contents differ"
        if how:
            return f"file {entry['path']!r} changed since registration ({how})"
    if current:
        return f"file {sorted(current)[0]!r} changed since registration (it was added)"
    return None


def seal(path: Path) -> None:
    """Make a copied tree the platform's: owned by this process's user where it may change
    owners, folders 0755 and files 0644 (readable by serving containers, written by none)."""
    uid, gid = os.geteuid(), os.getegid()
    for root, dirs, files in os.walk(path, followlinks=False):
        for name in dirs + files:
            p = os.path.join(root, name)
            try:
                os.lchown(p, uid, gid)
            except PermissionError:
                pass
            if not os.path.islink(p):
                os.chmod(p, 0o755 if name in dirs else 0o644)
    try:
        os.lchown(path, uid, gid)
    except PermissionError:
        pass
    os.chmod(path, 0o755)


class ModelFolders:
    """Where models' files live on this machine."""

    def __init__(self, root: Path, run_as: str = "1000:100"):
        self.root = Path(root)
        uid, _, gid = run_as.partition(":")
        self.uid, self.gid = int(uid or 1000), int(gid or 100)

    def user(self, owner: str) -> Path:
        return self.root / user_folder_name(owner)

    def model(self, owner: str, name: str) -> Path:
        return self.user(owner) / name

    def version(self, owner: str, name: str, version: int) -> Path:
        return self.model(owner, name) / str(version)

    def staging(self, writable_by_containers: bool = False) -> Path:
        """A new empty staging folder (for the engine's copy: writable by the images' user)."""
        base = self.root / STAGING
        base.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        os.chmod(base, 0o711)
        path = base / secrets.token_hex(8)
        path.mkdir(mode=0o755)
        if writable_by_containers:
            try:
                os.chown(path, self.uid, self.gid)
            except PermissionError:
                os.chmod(path, 0o777)
        return path

    def publish(self, staging: Path, owner: str, name: str, version: int) -> Path:
        """Move a sealed staging folder into place as the version's folder (one rename);
        a folder left there by a model of the same name deleted with its user goes first."""
        target = self.version(owner, name, version)
        target.parent.mkdir(parents=True, exist_ok=True)
        for p in (self.user(owner), target.parent):
            os.chmod(p, 0o755)
        if target.exists() or target.is_symlink():
            shutil.rmtree(target, ignore_errors=True)
        os.rename(staging, target)
        return target

    def remove_version(self, owner: str, name: str, version: int) -> None:
        shutil.rmtree(self.version(owner, name, version), ignore_errors=True)

    def remove_model(self, owner: str, name: str) -> None:
        shutil.rmtree(self.model(owner, name), ignore_errors=True)

    @staticmethod
    def discard(path: Path) -> None:
        shutil.rmtree(path, ignore_errors=True)

    def clean(self, models: set[tuple[str, str]]) -> int:
        """Remove the staging folders and every model folder not in `models` ({(owner,
        name)}: what the database holds; the rest is a deleted user's or model's); how many
        folders went."""
        shutil.rmtree(self.root / STAGING, ignore_errors=True)
        kept = {(user_folder_name(o), n) for o, n in models}
        removed = 0
        if not self.root.is_dir():
            return 0
        for user in self.root.iterdir():
            if user.name == STAGING or not user.is_dir() or user.is_symlink():
                continue
            for model in user.iterdir():
                if (user.name, model.name) not in kept:
                    shutil.rmtree(model, ignore_errors=True)
                    removed += 1
            if not any(user.iterdir()):
                user.rmdir()
        return removed
