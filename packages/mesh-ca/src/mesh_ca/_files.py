"""Atomic file writes and guarded reads for key material (private)."""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

MAX_FILE_BYTES = 1 << 20
"""PEM files the CA reads are small; anything bigger is refused rather than read."""


def write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` with ``mode``: readers see the old content or the new, never a part.

    The file is written under a temporary name in the same directory with ``mode`` from its creation (so a
    private key is never readable by others, whatever the umask), flushed to disk, then renamed over ``path``.
    """
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode)
    try:
        try:
            os.fchmod(descriptor, mode)  # the umask may have removed bits that mode asks for
            view = memoryview(data)
            while view:
                view = view[os.write(descriptor, view) :]
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    _sync_directory(path.parent)


def _sync_directory(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a directory be opened and synced
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def read_limited(path: Path) -> tuple[bytes, int]:
    """Return the content of the regular file ``path`` and its permission bits.

    Raises:
        OSError: the file is missing or unreadable, is not a regular file (``IsADirectoryError`` and
            ``ValueError`` are folded into it), or is over :data:`MAX_FILE_BYTES`.
    """
    descriptor = os.open(path, os.O_RDONLY)
    try:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            raise OSError(f"{path} is not a regular file")
        if status.st_size > MAX_FILE_BYTES:
            raise OSError(f"{path} is {status.st_size} bytes, over the limit of {MAX_FILE_BYTES}")
        chunks: list[bytes] = []
        total = 0
        while chunk := os.read(descriptor, 65536):
            total += len(chunk)
            if total > MAX_FILE_BYTES:
                raise OSError(f"{path} is over the limit of {MAX_FILE_BYTES} bytes")
            chunks.append(chunk)
        return b"".join(chunks), stat.S_IMODE(status.st_mode)
    finally:
        os.close(descriptor)
