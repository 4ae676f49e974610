"""What a request asks the echo app to do: the status to answer, a delay, a failure rate, the calls to make."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Collection, Mapping
from fractions import Fraction
from typing import final

MAX_DELAY = 60.0
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m)")
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0}


@final
@dataclasses.dataclass(frozen=True)
class Controls:
    """The controls of one request, already checked."""

    status: int = 200
    delay: float = 0.0
    fail: Fraction = Fraction(0)
    calls: tuple[str, ...] = ()


def parse_controls(
    path: str, query: Mapping[str, list[str]], headers: Mapping[str, str], dependencies: Collection[str]
) -> Controls:
    """Read the controls from the query (which wins) and the ``x-echo-*`` headers.

    Raises:
        ValueError: a control has a value the app cannot honour; the message names the control.
    """
    status = _pick("status", query, headers)
    delay = _pick("delay", query, headers)
    fail = _pick("fail", query, headers)
    names = [name for value in query.get("call", []) for name in value.split(",")]
    if path.startswith("/call/"):
        names.append(path.removeprefix("/call/").strip("/"))
    unknown = [name for name in names if name not in dependencies]
    if unknown:
        known = ", ".join(sorted(dependencies)) or "nothing"
        raise ValueError(f"call: unknown dependency {unknown[0]!r} (this app calls {known})")
    return Controls(
        status=200 if status is None else _status(status),
        delay=0.0 if delay is None else parse_duration(delay),
        fail=Fraction(0) if fail is None else _fraction(fail),
        calls=tuple(dict.fromkeys(names)),
    )


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``200ms``, ``0.2s`` or ``1m`` (at most a minute).

    Raises:
        ValueError: not such a duration, or longer than a minute.
    """
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"delay: {text!r} is not a duration like 200ms, 0.2s or 1m")
    seconds = float(match[1]) * _SECONDS[match[2]]
    if seconds > MAX_DELAY:
        raise ValueError(f"delay: {text!r} is longer than the {MAX_DELAY:g}s the app waits at most")
    return seconds


def _pick(name: str, query: Mapping[str, list[str]], headers: Mapping[str, str]) -> str | None:
    if name in query:
        return query[name][0]
    return headers.get(f"x-echo-{name}")


def _status(text: str) -> int:
    if not (text.isascii() and text.isdigit() and 200 <= int(text) <= 599):
        raise ValueError(f"status: {text!r} is not an HTTP status code from 200 to 599")
    return int(text)


def _fraction(text: str) -> Fraction:
    try:
        share = Fraction(text.strip())
    except (ValueError, ZeroDivisionError):
        share = Fraction(-1)
    if not 0 <= share <= 1:
        raise ValueError(f"fail: {text!r} is not a share of requests from 0 to 1 (such as 0.5 or 1/3)")
    return share
