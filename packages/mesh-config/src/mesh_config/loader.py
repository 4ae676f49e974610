"""Loading Istio config from YAML or JSON text, files and directory trees."""

from __future__ import annotations

import codecs
import os
import pathlib
import stat
import sys
from collections.abc import Iterable
from typing import Any, final

import attrs

from mesh_config._outcome import Outcome
from mesh_config._yaml import parse_documents
from mesh_config.diagnostics import Diagnostic, Position, Severity
from mesh_config.document import DocumentResult, load_data
from mesh_config.limits import LoadLimits
from mesh_config.meta import Resource

__all__ = ["CONFIG_SUFFIXES", "LoadResult", "load_file", "load_paths", "load_text"]

CONFIG_SUFFIXES = frozenset({".yaml", ".yml", ".json"})
"""File name endings that :func:`load_paths` reads when it walks a directory."""

_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


@final
@attrs.frozen
class LoadResult(Outcome):
    """The outcome of a load.

    Attributes:
        resources: every accepted object, in the order read.
        diagnostics: every problem, errors and warnings, in the order found.
        skipped: ``(source, kind)`` of documents that are not kinds mesh_config validates.
        documents: what became of each document, in the order read (documents after a YAML syntax error
            are not there: they were never read).
    """

    resources: tuple[Resource[Any], ...] = ()
    diagnostics: tuple[Diagnostic, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()
    documents: tuple[DocumentResult, ...] = ()

    def __add__(self, other: LoadResult) -> LoadResult:
        return LoadResult(
            self.resources + other.resources,
            self.diagnostics + other.diagnostics,
            self.skipped + other.skipped,
            self.documents + other.documents,
        )


def _problem(source: str, message: str, position: Position | None = None) -> LoadResult:
    return LoadResult(diagnostics=(Diagnostic(Severity.ERROR, message, position or Position(source)),))


def _at(source: str, data: bytes, offset: int) -> Position:
    """The line and column of a byte offset (the column counts bytes: the line is not valid UTF-8)."""
    before = data[:offset]
    return Position(source, before.count(b"\n") + 1, offset - (before.rfind(b"\n") + 1) + 1)


def _decode(data: bytes, source: str) -> str | LoadResult:
    """UTF-8 text (UTF-16 with a byte order mark, as YAML allows), or the problem."""
    try:
        if data.startswith(_UTF16_BOMS):
            return data.decode("utf-16")
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        position = _at(source, data, error.start) if not data.startswith(_UTF16_BOMS) else Position(source)
        return _problem(source, f"input is not UTF-8 text (byte {error.start} is invalid)", position)


def load_text(
    text: str | bytes,
    *,
    source: str = "<string>",
    default_namespace: str = "",
    limits: LoadLimits | None = None,
) -> LoadResult:
    """Load every document of a YAML (or JSON) text.

    Documents before a syntax error are kept; the error is reported with its position. Kinds that are not
    Istio's (Deployments, Services, ...) are skipped, not refused.

    Args:
        text: the text, or its bytes (UTF-8, or UTF-16 with a byte order mark).
        source: the name diagnostics give the text (a file name, ``-`` for standard input).
        default_namespace: the namespace of objects that set none (empty leaves it empty).
        limits: bounds on size, depth, alias expansion and document count.
    """
    bounds = limits or LoadLimits()
    if isinstance(text, bytes):
        if len(text) > bounds.max_bytes:
            return _problem(source, f"input is {len(text)} bytes; the limit is {bounds.max_bytes}")
        decoded = _decode(text, source)
        if isinstance(decoded, LoadResult):
            return decoded
        text = decoded
    if len(text) > bounds.max_bytes:
        return _problem(source, f"input is {len(text)} characters; the limit is {bounds.max_bytes}")
    nul = text.find("\x00")
    if nul >= 0:
        line = text.count("\n", 0, nul) + 1
        position = Position(source, line, nul - (text.rfind("\n", 0, nul) + 1) + 1)
        return _problem(source, "input contains NUL bytes: it is not a text file", position)
    parsed, problem = parse_documents(text, source, bounds)
    resources: list[Resource[Any]] = []
    diagnostics: list[Diagnostic] = []
    skipped: list[tuple[str, str]] = []
    documents: list[DocumentResult] = []
    for document in parsed:
        result = load_data(document.data, source=source, locate=document.position, default_namespace=default_namespace)
        result = attrs.evolve(result, index=document.index, position=document.position(()))
        documents.append(result)
        diagnostics.extend(result.diagnostics)
        if result.resource is not None:
            resources.append(result.resource)
        if result.skipped:
            skipped.append((source, result.kind))
    if problem is not None:
        diagnostics.append(Diagnostic(Severity.ERROR, problem.message, problem.position or Position(source)))
    return LoadResult(tuple(resources), tuple(diagnostics), tuple(skipped), tuple(documents))


def load_file(
    path: str | os.PathLike[str], *, default_namespace: str = "", limits: LoadLimits | None = None
) -> LoadResult:
    """Load one file (``-`` is not special here; see :func:`load_paths`).

    Only regular files are read (a FIFO or a device could block or never end), and never more than
    ``limits.max_bytes`` of them.
    """
    bounds = limits or LoadLimits()
    source = str(path)
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # before open(): opening a FIFO blocks
            return _problem(source, "not a regular file")
        with open(path, "rb") as file:
            info = os.fstat(file.fileno())
            if not stat.S_ISREG(info.st_mode):
                return _problem(source, "not a regular file")
            if info.st_size > bounds.max_bytes:
                return _problem(source, f"file is {info.st_size} bytes; the limit is {bounds.max_bytes}")
            data = file.read(bounds.max_bytes + 1)
    except OSError as error:
        return _problem(source, f"cannot read: {error.strerror or error}")
    return load_text(data, source=source, default_namespace=default_namespace, limits=bounds)


def config_files(directory: pathlib.Path) -> list[pathlib.Path]:
    """The config files under a directory, recursively, sorted, skipping hidden files and folders."""
    found = []
    for root, folders, files in os.walk(directory, followlinks=False):
        folders[:] = sorted(folder for folder in folders if not folder.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and pathlib.Path(name).suffix in CONFIG_SUFFIXES:
                found.append(pathlib.Path(root) / name)
    return found


def _read_stream(stream: Any, limit: int) -> str | bytes:
    """At most ``limit + 1`` units of a stream; bytes when it has a binary buffer (bad UTF-8 is then reported)."""
    binary = getattr(stream, "buffer", None)
    data: str | bytes = (binary if binary is not None else stream).read(limit + 1)
    return data


def load_paths(
    paths: Iterable[str | os.PathLike[str]],
    *,
    default_namespace: str = "",
    limits: LoadLimits | None = None,
    stdin: Any = None,
) -> LoadResult:
    """Load files and directory trees (``.yaml``, ``.yml``, ``.json`` below a directory); ``-`` is stdin.

    Args:
        paths: files, directories, or ``-``.
        default_namespace: the namespace of objects that set none.
        limits: bounds per file.
        stdin: the stream ``-`` reads, text or binary (``sys.stdin`` when ``None``).
    """
    bounds = limits or LoadLimits()
    result = LoadResult()
    for item in paths:
        if str(item) == "-":
            stream = stdin if stdin is not None else sys.stdin
            try:
                data = _read_stream(stream, bounds.max_bytes)
            except (OSError, UnicodeDecodeError) as error:
                result += _problem("-", f"cannot read standard input: {error}")
                continue
            result += load_text(data, source="-", default_namespace=default_namespace, limits=bounds)
            continue
        path = pathlib.Path(item)
        if path.is_dir():
            for file in config_files(path):
                result += load_file(file, default_namespace=default_namespace, limits=bounds)
        elif path.exists():
            result += load_file(path, default_namespace=default_namespace, limits=bounds)
        else:
            result += _problem(str(item), "no such file or directory")
    return result
