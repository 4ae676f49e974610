"""Config applied at runtime: checked here first, then written for meshd, then seen in meshd's ``/debug/configz``."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final, final

from mesh_config import load_text, to_dict
from mesh_harness.errors import ConfigRejectedError

_NAME: Final = re.compile(r"[A-Za-z0-9][-A-Za-z0-9_.]{0,99}\Z")

Key = tuple[str, str, str]
"""``(kind, namespace, name)`` of a config object."""


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value))


def check_name(name: object) -> str:
    """A config name usable as a file name in the config directory.

    Raises:
        ConfigRejectedError: it is not.
    """
    if not isinstance(name, str) or not _NAME.match(name) or name.startswith("mesh-ingress"):
        raise ConfigRejectedError(
            f"config name {name!r} must be letters, digits, '-', '_' or '.' (and not start with 'mesh-ingress')"
        )
    return name.removesuffix(".yaml")


@final
class ConfigFile:
    """One applied config: its file in meshd's config directory and the objects it holds."""

    def __init__(self, name: str, path: Path, text: str) -> None:
        result = load_text(text, source=f"{name}.yaml", default_namespace="default")
        problems = [diagnostic.format() for diagnostic in result.errors]
        if problems:
            raise ConfigRejectedError(f"config {name!r} does not validate:\n  " + "\n  ".join(problems))
        if not result.resources:
            skipped = f" (skipped: {', '.join(kind for _, kind in result.skipped)})" if result.skipped else ""
            raise ConfigRejectedError(f"config {name!r} holds no Istio config object{skipped}")
        self.name = name
        self.path = path
        self.text = text
        self.specs: dict[Key, Any] = {}
        for resource in result.resources:
            key = (resource.kind, resource.namespace, resource.name)
            if key in self.specs:
                raise ConfigRejectedError(f"config {name!r} holds {resource.kind} {key[1]}/{key[2]} twice")
            self.specs[key] = _plain(to_dict(resource)["spec"])

    def describe(self) -> str:
        """``VirtualService default/reviews, DestinationRule default/reviews``."""
        return ", ".join(f"{kind} {namespace}/{name}" for kind, namespace, name in self.specs)


def served(configz: Any) -> dict[Key, tuple[Any, str]]:
    """What meshd serves, from ``/debug/configz``: each object's spec and the file it comes from."""
    found: dict[Key, tuple[Any, str]] = {}
    resources = configz.get("resources", []) if isinstance(configz, dict) else []
    for item in resources:
        if not isinstance(item, dict):
            continue
        metadata = item.get("metadata", {})
        key = (str(item.get("kind")), str(metadata.get("namespace", "")), str(metadata.get("name", "")))
        found[key] = (item.get("spec"), str(item.get("source", "")))
    return found


def problems_of(configz: Any, path: Path) -> list[str]:
    """The errors meshd reports about one file, from its ``/debug/configz``."""
    diagnostics = configz.get("diagnostics", {}) if isinstance(configz, dict) else {}
    found = []
    for items in diagnostics.values() if isinstance(diagnostics, dict) else ():
        for item in items if isinstance(items, list) else ():
            if isinstance(item, dict) and item.get("severity") == "error" and Path(str(item.get("file"))) == path:
                where = f"{item.get('kind')} {item.get('namespace')}/{item.get('name')}: {item.get('field')}: "
                found.append(f"line {item.get('line')}: {where}{item.get('message')}")
    return found


def pending(configz: Any, wanted: Mapping[Key, tuple[Any, Path]], gone: Iterable[Key]) -> tuple[list[str], list[str]]:
    """What meshd does not serve yet: objects missing or different, objects still there; and its errors.

    Args:
        configz: meshd's ``/debug/configz``.
        wanted: objects that must be served with that spec, from that file.
        gone: objects that must not be served.
    """
    now = served(configz)
    waiting = []
    for key, (spec, path) in wanted.items():
        found = now.get(key)
        if found is None or found[0] != spec or Path(found[1]) != path:
            waiting.append(f"{key[0]} {key[1]}/{key[2]}")
    waiting += [f"{key[0]} {key[1]}/{key[2]} (to be removed)" for key in gone if key in now]
    errors = sorted({problem for _, path in wanted.values() for problem in problems_of(configz, path)})
    return waiting, errors
