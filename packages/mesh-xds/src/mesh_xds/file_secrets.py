"""Gateway credentials from a directory, as Kubernetes mounts TLS secrets: a :class:`~mesh_xds.SecretProvider`.

A gateway server with ``tls.credentialName: bookinfo-cert`` fetches SDS secret ``kubernetes://bookinfo-cert``
over ADS (and, for ``MUTUAL`` TLS, ``kubernetes://bookinfo-cert-cacert``). :class:`DirectorySecretProvider`
serves them from one folder per credential::

    credentials/
      bookinfo-cert/
        tls.crt      # the certificate chain, PEM, leaf first    -> kubernetes://bookinfo-cert
        tls.key      # its private key, PEM
        ca.crt       # optional: client CA roots, PEM            -> kubernetes://bookinfo-cert-cacert

Istio's other key names (``cert``, ``key``, ``cacert``) are read too. A folder holding only ``ca.crt`` also
serves its roots under its own name, as Istio does for a CA-only secret. Hidden files and folders are
skipped (a mounted Secret's ``..data`` links resolve through them)::

    secrets = DirectorySecretProvider("credentials")
    secrets.start()                       # follow changes: a rotated certificate is pushed to the gateways
    controller = XdsController(store, registry, secrets=secrets)

The rules:

- Changes are found by polling every ``poll_interval`` seconds (each file's inode, size and modification
  time); :meth:`DirectorySecretProvider.refresh` looks at once. Subscribers hear the names that appeared,
  changed or went.
- A credential whose files are incomplete or not PEM (a certificate without its key, a half-written file)
  is reported in :meth:`~DirectorySecretProvider.problems` and the log, and its last valid secrets stay
  served until it is fixed or its folder is removed.
- A folder that disappears takes its secrets away; a root directory that disappears changes nothing (an
  unmounted volume does not revoke every certificate), and is reported.
- Key material never appears in a log line, a problem or a ``repr``.
"""

from __future__ import annotations

import logging
import os
import pathlib
import threading
from collections.abc import Mapping
from types import TracebackType
from typing import Final, final

import attrs

from mesh_config.poller import Poller
from mesh_model import Subscription
from mesh_model.subscribers import Handlers
from mesh_xds._text import describe
from mesh_xds.errors import XdsError
from mesh_xds.secret import SecretChangeHandler, TlsSecret

__all__ = ["CREDENTIAL_SCHEME", "DirectorySecretProvider"]

_log = logging.getLogger("mesh_xds.file_secrets")

CREDENTIAL_SCHEME: Final = "kubernetes://"
"""The prefix of the SDS names of ``credentialName`` secrets."""
_CA_SUFFIX: Final = "-cacert"
_CERTIFICATE_FILES: Final = ("tls.crt", "cert")
_KEY_FILES: Final = ("tls.key", "key")
_CA_FILES: Final = ("ca.crt", "cacert")
_MAX_FILE_BYTES: Final = 1024 * 1024
_PEM_CERTIFICATE: Final = b"-----BEGIN CERTIFICATE-----"
_PEM_KEY_END: Final = b"PRIVATE KEY-----"

_Signature = tuple[tuple[str, int, int, int], ...]


@final
@attrs.frozen
class _Credential:
    """One folder: what it serves (its last valid content) and its current problem."""

    signature: _Signature
    secrets: Mapping[str, TlsSecret] = attrs.field(repr=False)
    problem: str = ""


def _first(folder: pathlib.Path, names: tuple[str, ...]) -> pathlib.Path | None:
    return next((folder / name for name in names if (folder / name).is_file()), None)


def _signature(folder: pathlib.Path) -> _Signature:
    found = []
    for name in (*_CERTIFICATE_FILES, *_KEY_FILES, *_CA_FILES):
        try:
            info = os.stat(folder / name)
        except OSError:
            continue
        found.append((name, info.st_ino, info.st_size, info.st_mtime_ns))
    return tuple(found)


def _read(path: pathlib.Path) -> bytes:
    with open(path, "rb") as file:
        data = file.read(_MAX_FILE_BYTES + 1)
    if len(data) > _MAX_FILE_BYTES:
        raise ValueError(f"{path.name} is larger than {_MAX_FILE_BYTES} bytes")
    return data


def _load(name: str, folder: pathlib.Path) -> dict[str, TlsSecret]:
    """The secrets of one folder, by SDS name.

    Raises:
        ValueError: the files are incomplete or not PEM (the message never quotes their content).
        OSError: a file cannot be read.
    """
    certificate, key, roots = (_first(folder, names) for names in (_CERTIFICATE_FILES, _KEY_FILES, _CA_FILES))
    if (certificate is None) != (key is None):
        present, missing = (certificate, "tls.key") if key is None else (key, "tls.crt")
        assert present is not None
        raise ValueError(f"has {present.name} but no {missing}")
    if certificate is None and roots is None:
        raise ValueError("holds none of tls.crt, tls.key, ca.crt")
    found: dict[str, TlsSecret] = {}
    sds_name = f"{CREDENTIAL_SCHEME}{name}"
    if certificate is not None and key is not None:
        chain, private_key = _read(certificate), _read(key)
        if _PEM_CERTIFICATE not in chain:
            raise ValueError(f"{certificate.name} holds no PEM certificate")
        if _PEM_KEY_END not in private_key:
            raise ValueError(f"{key.name} holds no PEM private key")
        found[sds_name] = TlsSecret(certificate_chain=chain, private_key=private_key)
    if roots is not None:
        trusted = _read(roots)
        if _PEM_CERTIFICATE not in trusted:
            raise ValueError(f"{roots.name} holds no PEM certificate")
        found[f"{sds_name}{_CA_SUFFIX}"] = TlsSecret(trusted_ca=trusted)
        if certificate is None:
            found[sds_name] = TlsSecret(trusted_ca=trusted)
    return found


@final
class DirectorySecretProvider:
    """Serves ``kubernetes://<name>`` secrets from ``<root>/<name>/tls.crt``, ``tls.key`` and ``ca.crt``.

    Args:
        root: the directory of credential folders.
        poll_interval: seconds between two looks at the files, once :meth:`start` is called.

    Raises:
        XdsError: ``root`` is not a directory, or ``poll_interval`` is not positive.
    """

    def __init__(self, root: str | os.PathLike[str], *, poll_interval: float = 1.0) -> None:
        if not isinstance(poll_interval, int | float) or not poll_interval > 0:
            raise XdsError(f"poll_interval must be a positive number of seconds, not {describe(poll_interval)}")
        self._root = pathlib.Path(root)
        if not self._root.is_dir():
            raise XdsError(f"the credentials directory {str(root)!r} is not a directory")
        self._lock = threading.Lock()
        self._scan_lock = threading.Lock()
        self._credentials: dict[str, _Credential] = {}
        self._served: dict[str, TlsSecret] = {}
        self._handlers = Handlers[str](logger=_log, source="secret", describe=describe)
        self._root_missing = False
        self._poller = Poller(
            self.refresh,
            float(poll_interval),
            name=f"mesh-xds credentials {self._root}",
            what=f"reading the credentials in {self._root}",
            logger=_log,
        )
        self.refresh()

    @property
    def root(self) -> pathlib.Path:
        """The directory served."""
        return self._root

    # ---------------------------------------------------------------- SecretProvider

    def get_secret(self, name: str) -> TlsSecret | None:
        """The secret called ``name`` (``kubernetes://<folder>`` or ``kubernetes://<folder>-cacert``), or ``None``."""
        with self._lock:
            return self._served.get(name)

    def subscribe(self, handler: SecretChangeHandler) -> Subscription:
        """Call ``handler(name)`` for every secret that appears, changes or goes, until cancelled."""
        return self._handlers.add(handler)

    # ---------------------------------------------------------------- what is served

    def names(self) -> tuple[str, ...]:
        """The names of the secrets served, sorted."""
        with self._lock:
            return tuple(sorted(self._served))

    def problems(self) -> dict[str, str]:
        """What is wrong now, by credential folder (``""`` for the root directory itself)."""
        with self._lock:
            found = {name: item.problem for name, item in sorted(self._credentials.items()) if item.problem}
            if self._root_missing:
                found[""] = f"{self._root} cannot be read; serving what was loaded"
        return found

    # ---------------------------------------------------------------- following the files

    def refresh(self) -> frozenset[str]:
        """Look at the files now; return the names of the secrets that changed (subscribers are told)."""
        with self._scan_lock:
            changed = self._scan()
            for name in sorted(changed):
                self._handlers.emit(name)
            return changed

    def _scan(self) -> frozenset[str]:
        try:
            folders = sorted(
                entry.name for entry in os.scandir(self._root) if entry.is_dir() and not entry.name.startswith(".")
            )
        except OSError as error:
            if not self._root_missing:
                _log.error("credentials directory %s cannot be read (%s); serving what was loaded", self._root, error)
            self._root_missing = True
            return frozenset()
        if self._root_missing:
            _log.info("credentials directory %s can be read again", self._root)
            self._root_missing = False
        credentials: dict[str, _Credential] = {}
        for name in folders:
            folder = self._root / name
            signature = _signature(folder)
            previous = self._credentials.get(name)
            if previous is not None and previous.signature == signature:
                credentials[name] = previous
                continue
            try:
                credentials[name] = _Credential(signature, _load(name, folder))
                if previous is not None and previous.problem:
                    _log.info("credential %s is valid again", name)
            except (OSError, ValueError) as error:
                reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
                kept = previous.secrets if previous is not None else {}
                what = f"keeping its last {len(kept)} valid secrets" if kept else "nothing served from it"
                _log.warning("credential %s in %s %s (%s)", name, self._root, reason, what)
                credentials[name] = _Credential(signature, kept, reason)
        served = {key: value for item in credentials.values() for key, value in item.secrets.items()}
        with self._lock:
            before = self._served
            self._credentials, self._served = credentials, served
        return frozenset(name for name in before.keys() | served.keys() if before.get(name) != served.get(name))

    def start(self) -> None:
        """Follow the files in a background thread (does nothing when already started)."""
        self._poller.start()

    def stop(self) -> None:
        """Stop following the files; waits for the background thread to end. The secrets stay served."""
        self._poller.stop()

    def __enter__(self) -> DirectorySecretProvider:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<DirectorySecretProvider {str(self._root)!r}: {len(self.names())} secrets>"
