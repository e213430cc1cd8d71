"""A job version's files on the platform's machine: code snapshot, output, checkpoints, logs.

<data>/jobs/<owner>/<job>/<version>/{code,output,checkpoints,logs}. The owner's folder is
mounted read-only into each of their instances (at <work folder>/jobs), and each version's
folders into its nodes. Containers write output and checkpoints as the images' user, and may
leave symbolic links there: the platform reads those folders without following any link.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import shutil
import stat
import tarfile
from pathlib import Path, PurePosixPath

from spawner.container import user_folder_name

FOLDERS = ("code", "output", "checkpoints", "logs")


class FilesError(ValueError):
    """A code archive or a file path is refused; the message says why."""


def relative_path(path: str, what: str = "path") -> PurePosixPath:
    """A path inside a folder: relative, normalised, no '..', no empty parts."""
    if not isinstance(path, str) or not path.strip() or "\x00" in path:
        raise FilesError(f"The {what} is empty.")
    p = PurePosixPath(path.strip())
    if p.is_absolute() or any(part in ("..", "") for part in p.parts):
        raise FilesError(f"The {what} {path!r} must be relative to the folder, without '..'.")
    return PurePosixPath(*[part for part in p.parts if part != "."])


def decode_archive(data: str, max_bytes: int) -> bytes:
    """The bytes of a base64 code archive, refusing what is too big."""
    if not isinstance(data, str) or not data:
        raise FilesError("source.archive is empty: send the code as a base64 .tar.gz.")
    if len(data) > max_bytes * 4 // 3 + 16:
        raise FilesError(
            f"The code archive is larger than {max_bytes // 1024**2} MiB: leave data out of the "
            "code folder and pass it as an input instead."
        )
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise FilesError("source.archive is not valid base64.") from None


def check_archive(raw: bytes, max_bytes: int) -> list[str]:
    """The regular files' names in a .tar.gz of code, refusing links, devices, absolute or
    '..' names and what unpacks to more than max_bytes."""
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:*") as tar:
            members = tar.getmembers()
    except (tarfile.TarError, EOFError, OSError, zlib_error()) as e:
        raise FilesError(f"source.archive is not a readable .tar.gz ({e}).") from None
    names, total = [], 0
    for member in members:
        relative_path(member.name, "archive member")
        if member.isdir():
            continue
        if not member.isfile():
            raise FilesError(
                f"The code archive holds {member.name!r}, which is not a regular file "
                "(links and devices are not allowed)."
            )
        total += member.size
        if total > max_bytes:
            raise FilesError(f"The code unpacks to more than {max_bytes // 1024**2} MiB.")
        names.append(str(relative_path(member.name)))
    if not names:
        raise FilesError("The code archive holds no files.")
    return names


def zlib_error():
    import zlib

    return zlib.error


def unpack_archive(raw: bytes, dest: Path) -> None:
    """Unpack a checked archive into dest (made read-only for the job's user)."""
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:*") as tar:
        tar.extractall(dest, filter="data")
    for root, dirs, files in os.walk(dest):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o755)
        for name in files:
            os.chmod(os.path.join(root, name), 0o644)


class JobFolders:
    """Where jobs' files live on this machine, and the owner of what containers write."""

    def __init__(self, root: Path, run_as: str = "1000:100"):
        self.root = Path(root)
        uid, _, gid = run_as.partition(":")
        self.uid, self.gid = int(uid or 1000), int(gid or 100)

    def user(self, owner: str) -> Path:
        return self.root / user_folder_name(owner)

    def job(self, owner: str, job: str) -> Path:
        return self.user(owner) / job

    def version(self, owner: str, job: str, version: int) -> Path:
        return self.job(owner, job) / str(version)

    def prepare_user(self, owner: str) -> Path:
        """The owner's folder (mounted read-only into their instances), made if missing."""
        path = self.user(owner)
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        os.chmod(path, 0o755)
        return path

    def create_version(self, owner: str, job: str, version: int, code: bytes | Path) -> Path:
        """The version's folders, with its code unpacked (bytes) or copied (a folder)."""
        self.prepare_user(owner)
        base = self.version(owner, job, version)
        if base.exists():
            shutil.rmtree(base)
        base.mkdir(parents=True)
        os.chmod(base.parent, 0o755)
        if isinstance(code, Path):
            shutil.copytree(code, base / "code", symlinks=True)
        else:
            unpack_archive(code, base / "code")
        for name in ("output", "checkpoints", "logs"):
            (base / name).mkdir()
        for name in ("output", "checkpoints"):
            self._give(base / name)
        return base

    def _give(self, path: Path) -> None:
        """Let the job's user write: its owner where we may chown, else world-writable."""
        try:
            os.chown(path, self.uid, self.gid)
            os.chmod(path, 0o755)
        except PermissionError:
            os.chmod(path, 0o777)

    def remove_version(self, owner: str, job: str, version: int) -> None:
        shutil.rmtree(self.version(owner, job, version), ignore_errors=True)

    def remove_job(self, owner: str, job: str) -> None:
        shutil.rmtree(self.job(owner, job), ignore_errors=True)

    def log_path(self, owner: str, job: str, version: int, rank: int) -> Path:
        return self.version(owner, job, version) / "logs" / f"node-{rank}.log"

    # --- reading what a version holds, never following links --------------------------
    def _walk_safe(self, base: Path, rel: PurePosixPath) -> int:
        """An fd of base/rel opened without following any symbolic link; caller closes."""
        fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for part in rel.parts:
                new = os.open(part, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=fd)
                os.close(fd)
                fd = new
            return fd
        except FileNotFoundError:
            os.close(fd)
            raise FilesError(f"No file or folder {str(rel)!r} in this job version.") from None
        except (NotADirectoryError, OSError) as e:
            os.close(fd)
            if isinstance(e, FilesError):
                raise
            raise FilesError(f"{str(rel)!r} cannot be read (links are not followed).") from None

    def list_files(self, owner: str, job: str, version: int, path: str) -> list[dict]:
        """Files below a version's folder (path: output, checkpoints, code, logs or below)."""
        rel = self._checked(path)
        base = self.version(owner, job, version)
        fd = self._walk_safe(base, rel)
        try:
            if not stat.S_ISDIR(os.fstat(fd).st_mode):
                st = os.fstat(fd)
                return [{"path": str(rel), "size": st.st_size, "type": "file"}]
        finally:
            os.close(fd)
        found = []
        top = base / rel
        for root, dirs, files in os.walk(top, followlinks=False):
            for name in sorted(dirs):
                p = Path(root, name)
                if not p.is_symlink():
                    found.append({"path": str(p.relative_to(base)), "size": 0, "type": "directory"})
            for name in sorted(files):
                p = Path(root, name)
                st = p.lstat()
                if stat.S_ISREG(st.st_mode):
                    rel_path = str(p.relative_to(base))
                    found.append({"path": rel_path, "size": st.st_size, "type": "file"})
            if len(found) > 10000:
                break
        return found

    def open_file(self, owner: str, job: str, version: int, path: str):
        """A regular file of a version opened for reading (binary), never through a link."""
        rel = self._checked(path)
        fd = self._walk_safe(self.version(owner, job, version), rel)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise FilesError(f"{str(rel)!r} is a folder: list it with ?path={rel}.")
        return os.fdopen(fd, "rb")

    @staticmethod
    def _checked(path: str) -> PurePosixPath:
        rel = relative_path(path or "output")
        if rel.parts[0] not in FOLDERS:
            raise FilesError(f"A job version's files are in {', '.join(FOLDERS)}; not {path!r}.")
        return rel
