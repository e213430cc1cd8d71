"""Samples' files, content-addressed on fsspec: <root>/<sha[:2]>/<sha>, each content stored once.

A file is hashed while it is copied into a temporary name below the root, then moved to its
address (where that content is already stored, the copy is dropped), so that a blob at its
address is always whole. The async methods do their work in threads; the *_blocking ones are
for code that already runs in a worker thread (an import of many files).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import re
import secrets
import shutil
from pathlib import Path

import fsspec

CHUNK = 1024 * 1024
SHA256 = re.compile(r"^[0-9a-f]{64}$")
# where files being copied in wait for their address
TEMPORARY = ".incoming"


class BlobError(ValueError):
    """A blob address that is not a SHA-256, or a blob that is missing."""


class BlobStore:
    """Content-addressed files below `url` (file:///..., s3://bucket/prefix, memory://...)."""

    def __init__(self, url: str):
        self.url = url
        self.fs, root = fsspec.core.url_to_fs(url)
        self.root = root.rstrip("/")
        self.local = "file" in _protocols(self.fs)
        # the folders of a local store already made (blobs are removed, folders stay)
        self._made: set[str] = set()

    def __repr__(self) -> str:
        return f"<BlobStore {self.url}>"

    def path(self, sha: str) -> str:
        """The blob's path in the store's file system."""
        if not isinstance(sha, str) or not SHA256.match(sha):
            raise BlobError(f"{sha!r} is not a SHA-256 of a stored file.")
        return f"{self.root}/{sha[:2]}/{sha}"

    def local_path(self, sha: str) -> Path | None:
        """The blob's file on this machine (file:// stores only; None elsewhere)."""
        return Path(self.path(sha)) if self.local else None

    # --- blocking -------------------------------------------------------------------------
    def _folder(self, folder: str) -> None:
        """Make a folder of the store once (a local store remembers those it made)."""
        if folder in self._made:
            return
        self.fs.makedirs(folder, exist_ok=True)
        if self.local:
            self._made.add(folder)

    def _temporary(self) -> str:
        folder = f"{self.root}/{TEMPORARY}"
        self._folder(folder)
        return f"{folder}/{secrets.token_hex(12)}"

    def _place(self, temporary: str, sha: str) -> None:
        """Move a whole temporary copy to its address (dropped when the content is there)."""
        target = self.path(sha)
        if self.local:
            if os.path.exists(target):
                os.unlink(temporary)
                return
            self._folder(f"{self.root}/{sha[:2]}")
            os.chmod(temporary, 0o444)
            os.replace(temporary, target)
            return
        if self.fs.exists(target):
            self.fs.rm(temporary)
            return
        self.fs.makedirs(f"{self.root}/{sha[:2]}", exist_ok=True)
        self.fs.mv(temporary, target)

    def put_stream_blocking(self, source, on_hashed=None) -> tuple[str, int]:
        """Store what a binary file object reads: (sha256, size). on_hashed(sha) is called
        once the content is known, before it is put at its address (to pin it)."""
        digest, size = hashlib.sha256(), 0
        temporary = self._temporary()
        try:
            with self.fs.open(temporary, "wb") as out:
                while chunk := source.read(CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
            sha = digest.hexdigest()
            if on_hashed is not None:
                on_hashed(sha)
            self._place(temporary, sha)
        except BaseException:
            if self.fs.exists(temporary):
                self.fs.rm(temporary)
            raise
        return sha, size

    def put_file_blocking(
        self, path: Path, *, move: bool = False, on_hashed=None, digest=None
    ) -> tuple[str, int]:
        """Store a local file: (sha256, size). move: the file is the caller's to give up
        (a local store then takes it in one rename where it can, instead of copying);
        digest: its (sha256, size) where the caller hashed it as it wrote it (and no one
        else could write to it since)."""
        if move and self.local and digest is not None:
            # a whole file already hashed: one rename to its address where it can
            sha, size = digest
            if on_hashed is not None:
                on_hashed(sha)
            target = self.path(sha)
            if os.path.exists(target):
                os.unlink(path)
                return sha, size
            self._folder(f"{self.root}/{sha[:2]}")
            os.chmod(path, 0o444)
            try:
                os.replace(path, target)
                return sha, size
            except OSError:  # another file system: through a temporary copy below
                pass
        if move and self.local:
            if digest is not None:
                sha, size = digest
            else:
                hashed, size = hashlib.sha256(), 0
                with open(path, "rb") as f:
                    while chunk := f.read(CHUNK):
                        hashed.update(chunk)
                        size += len(chunk)
                sha = hashed.hexdigest()
            temporary = self._temporary()
            try:
                os.replace(path, temporary)
            except OSError:  # another file system: copy it
                shutil.copyfile(path, temporary)
            try:
                if on_hashed is not None:
                    on_hashed(sha)
                self._place(temporary, sha)
            except BaseException:
                if os.path.exists(temporary):
                    os.unlink(temporary)
                raise
            return sha, size
        with open(path, "rb") as f:
            return self.put_stream_blocking(f, on_hashed)

    def put_bytes_blocking(self, data: bytes, on_hashed=None) -> tuple[str, int]:
        return self.put_stream_blocking(io.BytesIO(data), on_hashed)

    def open_blocking(self, sha: str):
        try:
            return self.fs.open(self.path(sha), "rb")
        except FileNotFoundError:
            raise BlobError(f"The file {sha} is missing from the store.") from None

    def read_blocking(self, sha: str, limit: int | None = None) -> bytes:
        with self.open_blocking(sha) as f:
            return f.read(-1 if limit is None else limit)

    def exists_blocking(self, sha: str) -> bool:
        return self.fs.exists(self.path(sha))

    def remove_blocking(self, sha: str) -> bool:
        """Remove a blob; whether it was there."""
        path = self.path(sha)
        try:
            self.fs.rm(path)
            return True
        except FileNotFoundError:
            return False

    def size_of_blocking(self, sha: str) -> int:
        try:
            return int(self.fs.size(self.path(sha)))
        except FileNotFoundError:
            raise BlobError(f"The file {sha} is missing from the store.") from None

    def addresses_blocking(self) -> set[str]:
        """Every stored blob's SHA-256 (a walk of the whole store)."""
        found = set()
        if not self.fs.exists(self.root):
            return found
        for entry in self.fs.ls(self.root, detail=False):
            prefix = entry.rstrip("/").rsplit("/", 1)[-1]
            if len(prefix) != 2 or not self.fs.isdir(entry):
                continue
            for blob in self.fs.ls(entry, detail=False):
                name = blob.rstrip("/").rsplit("/", 1)[-1]
                if SHA256.match(name) and name.startswith(prefix):
                    found.add(name)
        return found

    def clear_temporary_blocking(self) -> int:
        """Remove copies a stop left unfinished; how many."""
        folder = f"{self.root}/{TEMPORARY}"
        if not self.fs.exists(folder):
            return 0
        names = self.fs.ls(folder, detail=False)
        for name in names:
            self.fs.rm(name)
        return len(names)

    # --- async ----------------------------------------------------------------------------
    async def put_file(self, path: Path, *, move: bool = False) -> tuple[str, int]:
        """Store a local file (hashed while copied): (sha256, size)."""
        return await asyncio.to_thread(self.put_file_blocking, Path(path), move=move)

    async def put_bytes(self, data: bytes) -> tuple[str, int]:
        return await asyncio.to_thread(self.put_bytes_blocking, data)

    async def open(self, sha: str):
        """The blob opened for reading (binary); BlobError when it is missing."""
        return await asyncio.to_thread(self.open_blocking, sha)

    async def read(self, sha: str, limit: int | None = None) -> bytes:
        return await asyncio.to_thread(self.read_blocking, sha, limit)

    async def exists(self, sha: str) -> bool:
        return await asyncio.to_thread(self.exists_blocking, sha)

    async def remove(self, sha: str) -> bool:
        return await asyncio.to_thread(self.remove_blocking, sha)

    async def size_of(self, sha: str) -> int:
        return await asyncio.to_thread(self.size_of_blocking, sha)


def _protocols(fs) -> tuple[str, ...]:
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)
