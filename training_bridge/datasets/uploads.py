"""What an upload or an import brings, checked before any of it is kept: archives unpacked
member by member (no absolute paths, "..", links or devices; a size limit counted on the
bytes themselves), copied folders walked without following links, images opened with Pillow
and texts decoded as UTF-8. Blocking functions: they run in worker threads."""

from __future__ import annotations

import hashlib
import os
import re
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from training_bridge.files import FilesError, relative_path

from .store import IMAGE_TYPES

CHUNK = 1024 * 1024
# request Content-Types of archives -> how they are read
ARCHIVE_TYPES = {
    "application/zip": "zip",
    "application/x-zip-compressed": "zip",
    "application/x-tar": "tar",
    "application/tar": "tar",
    "application/gzip": "tar",
    "application/x-gzip": "tar",
    "application/x-compressed-tar": "tar",
    "application/tar+gzip": "tar",
}
# Pillow's formats that browsers show -> media type
IMAGE_FORMATS = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "GIF": "image/gif",
    "BMP": "image/bmp",
    "WEBP": "image/webp",
}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".png", ".gif", ".bmp", ".webp")
TEXT_SUFFIXES = (".txt",)
# what archivers and desktops add that is no sample
JUNK_FOLDERS = ("__MACOSX",)
JUNK_FILES = ("Thumbs.db", "desktop.ini")
MAX_KEY = 512
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class UploadError(ValueError):
    """What was sent cannot be taken; the message says what and how to fix it (HTTP 400)."""


def check_key(key, what: str = "sample key") -> str:
    """A sample's key: a relative POSIX path without "..", at most 512 characters."""
    if isinstance(key, str) and CONTROL.search(key):
        raise UploadError(f"The {what} {key!r} holds control characters.")
    try:
        rel = relative_path(key, what)
    except FilesError as e:
        raise UploadError(str(e)) from None
    text = str(rel)
    if not rel.parts or text == ".":
        raise UploadError(f"The {what} {key!r} names no file.")
    if len(text) > MAX_KEY:
        raise UploadError(f"The {what} {text[:60]!r}... is longer than {MAX_KEY} characters.")
    return text


def is_junk(key: str) -> bool:
    """Files archivers and desktops add (macOS resource forks, thumbnails, hidden files)."""
    parts = PurePosixPath(key).parts
    if any(part in JUNK_FOLDERS for part in parts[:-1]):
        return True
    return parts[-1].startswith(".") or parts[-1] in JUNK_FILES


def archive_kind(content_type: str | None) -> str | None:
    """ "zip" or "tar" for an archive's Content-Type (tar also gzip-compressed); None else."""
    base = (content_type or "").split(";", 1)[0].strip().lower()
    return ARCHIVE_TYPES.get(base)


def accepted_suffixes(dataset_type: str) -> tuple[str, ...]:
    return IMAGE_SUFFIXES if dataset_type in IMAGE_TYPES else TEXT_SUFFIXES


# --- archives ----------------------------------------------------------------------------
class _Unpacker:
    """Writes an archive's regular files below dest, refusing what may not be there."""

    def __init__(self, dest: Path, max_bytes: int, max_files: int):
        self.dest = dest
        self.max_bytes = max_bytes
        self.max_files = max_files
        self.total = 0
        self.keys: list[str] = []
        # key -> (sha256, size): hashed as they are written, so the store need not read
        # them again
        self.digests: dict[str, tuple[str, int]] = {}
        self._folders: set[Path] = set()

    def name(self, raw: str, folder: bool = False) -> str:
        if folder and raw.strip().rstrip("/") in ("", "."):
            return "."  # the archive's own top folder ("./")
        return check_key(raw, "archive member")

    def refuse_type(self, name: str, what: str):
        raise UploadError(
            f"The archive holds {name!r}, which is {what}: only regular files and folders "
            "may be in it."
        )

    def write(self, key: str, source) -> None:
        """Write one member (its key already checked), hashing it on the way."""
        if is_junk(key):
            while source.read(CHUNK):
                pass
            return
        if len(self.keys) >= self.max_files:
            raise UploadError(f"The archive holds more than {self.max_files} files.")
        path = self.dest / key
        try:
            if path.parent not in self._folders:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._folders.add(path.parent)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            raise UploadError(f"The archive holds {key!r} twice.") from None
        except (NotADirectoryError, FileNotFoundError):
            raise UploadError(
                f"The archive holds {key!r} below a file of the same name as its folder."
            ) from None
        digest, size = hashlib.sha256(), 0
        with os.fdopen(fd, "wb") as out:
            while chunk := source.read(CHUNK):
                size += len(chunk)
                self.total += len(chunk)
                if self.total > self.max_bytes:
                    raise UploadError(
                        f"The archive unpacks to more than {_size(self.max_bytes)}, the most "
                        "a dataset may hold: send fewer files."
                    )
                digest.update(chunk)
                out.write(chunk)
        self.keys.append(key)
        self.digests[key] = (digest.hexdigest(), size)

    def tar(self, archive: Path) -> None:
        try:
            with tarfile.open(archive, mode="r|*") as tar:
                for member in tar:
                    name = self.name(member.name, member.isdir())
                    if member.isdir():
                        continue
                    if member.issym() or member.islnk():
                        self.refuse_type(name, "a link")
                    if not member.isfile():
                        self.refuse_type(name, "a device, pipe or other special file")
                    source = tar.extractfile(member)
                    self.write(name, source)
        except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
            raise UploadError(f"The body is not a readable tar or tar.gz archive ({e}).") from None

    def zip(self, archive: Path) -> None:
        try:
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    name = self.name(info.filename, info.is_dir())
                    mode = info.external_attr >> 16
                    if stat.S_ISLNK(mode):
                        self.refuse_type(name, "a link")
                    if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
                        self.refuse_type(name, "a device, pipe or other special file")
                    if info.is_dir():
                        continue
                    if info.flag_bits & 0x1:
                        raise UploadError(f"{name!r} in the zip is encrypted: send it unencrypted.")
                    with zf.open(info) as source:
                        self.write(name, source)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError) as e:
            raise UploadError(f"The body is not a readable zip archive ({e}).") from None
        except (EOFError, zlib.error, OSError) as e:
            raise UploadError(f"The body is not a readable zip archive ({e}).") from None


def unpack(
    archive: Path, kind: str, dest: Path, *, max_bytes: int, max_files: int
) -> dict[str, tuple[str, int]]:
    """Unpack a zip or tar(.gz) archive into the empty folder dest; key -> (sha256, size) of
    the files it held (hidden files and archivers' folders left out), in archive order."""
    unpacker = _Unpacker(dest, max_bytes, max_files)
    if kind == "zip":
        unpacker.zip(archive)
    else:
        unpacker.tar(archive)
    if not unpacker.keys:
        raise UploadError("The archive holds no files.")
    return unpacker.digests


def check_tree(root: Path) -> None:
    """Refuse a copied folder that holds links, devices, pipes or sockets (never followed)."""
    for top, dirs, files in os.walk(root, followlinks=False):
        for name in dirs + files:
            path = Path(top, name)
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                raise UploadError(
                    f"{str(path.relative_to(root))!r} is a symbolic link: links are not "
                    "followed; copy the files themselves."
                )
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                raise UploadError(
                    f"{str(path.relative_to(root))!r} is not a regular file (a device, pipe "
                    "or socket)."
                )


def open_below(root: Path, key: str):
    """root/key opened for reading without following any link; UploadError (saying what is
    wrong with the file, to follow its name) when it is not a regular file there."""
    flags = os.O_RDONLY | os.O_NOFOLLOW
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        parts = PurePosixPath(key).parts
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            new = os.open(part, flags | (os.O_NONBLOCK if last else os.O_DIRECTORY), dir_fd=fd)
            os.close(fd)
            fd = new
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UploadError("is not a regular file.")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except FileNotFoundError:
        os.close(fd)
        raise UploadError("is not among the files.") from None
    except OSError:
        os.close(fd)
        raise UploadError("cannot be read (links are not followed).") from None
    except UploadError:
        os.close(fd)
        raise


# --- the files themselves ----------------------------------------------------------------
def inspect_image(path: Path, max_pixels: int) -> tuple[str, int, int]:
    """(media type, width, height) of an image file Pillow reads whole; UploadError else."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            fmt = img.format
            width, height = img.size
            if fmt not in IMAGE_FORMATS:
                raise UploadError(
                    f"is a {fmt} image: use JPEG, PNG, GIF, BMP or WebP (what browsers show)."
                )
            if width * height > max_pixels:
                raise UploadError(
                    f"has {width}x{height} pixels, more than the {max_pixels} an image may have."
                )
            img.verify()
    except UploadError:
        raise
    except Image.DecompressionBombError:
        raise UploadError(f"has more than the {max_pixels} pixels an image may have.") from None
    except UnidentifiedImageError:
        raise UploadError("is not an image (JPEG, PNG, GIF, BMP or WebP).") from None
    except (OSError, SyntaxError, ValueError, EOFError, zlib.error) as e:
        raise UploadError(f"is not a readable image ({e}).") from None
    return IMAGE_FORMATS[fmt], width, height


def decode_text(data: bytes, max_bytes: int) -> str:
    """A text sample's text: UTF-8 (a leading BOM dropped), at most max_bytes."""
    if len(data) > max_bytes:
        raise UploadError(f"has {len(data)} bytes, more than the {max_bytes} a text may have.")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UploadError(f"is not UTF-8 text ({e.reason} at byte {e.start}).") from None
    return text.removeprefix("\ufeff")


def _size(n: int) -> str:
    if n >= 1024**3:
        return f"{n / 1024**3:g} GiB"
    return f"{n / 1024**2:.0f} MiB"
