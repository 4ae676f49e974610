"""Turning one parsed document into a validated :class:`~mesh_config.Resource`, with diagnostics."""

from __future__ import annotations

import datetime
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any, final

import attrs

from mesh_config import _registry  # noqa: F401  (registers every kind)
from mesh_config._structure import Problems, freeze, structure
from mesh_config.diagnostics import Diagnostic, FieldPath, Position, Severity, has_errors
from mesh_config.kinds import ISTIO_GROUPS, KindSpec, all_kinds, kind_for
from mesh_config.limits import LoadLimits
from mesh_config.meta import ObjectMeta, Resource
from mesh_config.validation import ValidationContext

__all__ = ["DocumentResult", "load_object"]

_ENVELOPE = frozenset({"apiVersion", "kind", "metadata", "spec", "status"})
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")
_LABEL_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]\Z")

_log = logging.getLogger("mesh_config")
_ABSENT = object()
_DRY_RUN = "istio.io/dry-run"
# The spellings Go's strconv.ParseBool accepts, which is what Istio parses the annotation with.
_PARSE_BOOL = frozenset({"1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False"})
_ALWAYS_REJECT = "internal.istio.io/webhook-always-reject"
_FORBIDDEN_ANNOTATIONS = ("internal.istio.io/parent-namespace", "internal.istio.io/parent-names", _ALWAYS_REJECT)


@final
@attrs.frozen
class DocumentResult:
    """What became of one document.

    Attributes:
        resource: the accepted object, or ``None`` when it has errors or is not an Istio kind.
        diagnostics: every problem found, errors and warnings.
        skipped: True when the document is not of a kind mesh_config validates (a Deployment, say).
        kind: the document's kind, as written.
        api_version: the document's apiVersion, as written.
        namespace: the document's namespace (the default namespace when it sets none), as far as it could be
            read; also for documents that were refused or skipped.
        name: the document's name, as far as it could be read.
        source: the file name (or label) the document came from.
        index: the document's place among the non-empty documents of its source, from 0.
        position: where the document starts, when known.
    """

    resource: Resource[Any] | None
    diagnostics: tuple[Diagnostic, ...]
    skipped: bool = False
    kind: str = ""
    api_version: str = ""
    namespace: str = ""
    name: str = ""
    source: str = ""
    index: int = 0
    position: Position | None = None

    @property
    def ok(self) -> bool:
        """True when the document has no error (a skipped document has none)."""
        return not has_errors(self.diagnostics)


def load_object(
    data: object,
    *,
    source: str = "<object>",
    position: Callable[[FieldPath], Position] | None = None,
    default_namespace: str = "",
    limits: LoadLimits | None = None,
) -> DocumentResult:
    """Validate one document given as plain data (a dict as from ``yaml.safe_load`` or ``json.load``).

    Python values that JSON does not have are turned into what Kubernetes would see: map keys into strings
    (``80`` into ``"80"``), tuples into lists, dates into ISO 8601 strings. Values with no JSON form (bytes,
    sets, other objects) and nesting deeper than ``limits.max_depth`` are reported as errors.

    Args:
        data: the document.
        source: the file name for diagnostics.
        position: maps a field path to its source position; without it diagnostics name only the source.
        default_namespace: the namespace of a namespaced object that does not set one (``kubectl``'s
            current namespace); empty leaves it empty.
        limits: bounds on the document (only ``max_depth`` applies here).
    """
    locate = position or (lambda _path: Position(source))
    problems: Problems = []
    plain = _plain(data, (), problems, (limits or LoadLimits()).max_depth)
    if problems:
        kind, api_version, namespace, name = _identity(plain, default_namespace)
        meta = ObjectMeta(name=name, namespace=namespace)
        findings = [(Severity.ERROR, path, message) for path, message in problems]
        result = _result(None, findings, locate, kind=kind, metadata=meta)
        return attrs.evolve(result, api_version=api_version, namespace=namespace, name=name, source=source)
    return load_data(plain, source=source, locate=locate, default_namespace=default_namespace)


def load_data(
    data: object, *, source: str, locate: Callable[[FieldPath], Position], default_namespace: str
) -> DocumentResult:
    """:func:`load_object` for data that is already plain JSON (string keys, lists), as the parser makes it."""
    kind, api_version, namespace, name = _identity(data, default_namespace)
    result = _load_plain(data, kind, api_version, locate, default_namespace)
    if result.resource is not None:
        namespace, name = result.resource.namespace, result.resource.name
    elif (spec := kind_for(api_version, kind)) is not None and spec.cluster_scoped:
        namespace = _identity(data, "")[2]
    return attrs.evolve(result, kind=kind, api_version=api_version, namespace=namespace, name=name, source=source)


def _load_plain(
    data: object, kind: str, api_version: str, locate: Callable[[FieldPath], Position], default_namespace: str
) -> DocumentResult:
    if not isinstance(data, Mapping):
        return _result(None, [(Severity.ERROR, (), "a config document must be a map with apiVersion and kind")], locate)
    _, _, namespace, name = _identity(data, default_namespace)
    meta = ObjectMeta(name=name, namespace=namespace)
    findings: list[tuple[Severity, FieldPath, str]] = []
    if not api_version:
        findings.append((Severity.ERROR, ("apiVersion",), "apiVersion is missing or not a string"))
    if not kind:
        findings.append((Severity.ERROR, ("kind",), "kind is missing or not a string"))
    if findings:
        return _result(None, findings, locate, kind=kind, metadata=meta)
    group = api_version.rpartition("/")[0]
    spec = kind_for(api_version, kind)
    if spec is not None:
        return _load(spec, data, api_version, locate, default_namespace)
    served = [known for known in all_kinds() if known.group == group and known.kind == kind]
    if served:
        versions = ", ".join(served[0].versions)
        message = f"{kind} is not served in {api_version!r} (versions served: {versions})"
        findings.append((Severity.ERROR, ("apiVersion",), message))
    elif group in ISTIO_GROUPS:
        findings.append((Severity.ERROR, ("kind",), f"unknown kind {kind!r} in {api_version!r}"))
    else:
        return DocumentResult(None, (), skipped=True)
    return _result(None, findings, locate, kind=kind, metadata=meta)


def _identity(data: object, default_namespace: str) -> tuple[str, str, str, str]:
    """``(kind, apiVersion, namespace, name)`` of a document, as far as they can be read."""
    if not isinstance(data, Mapping):
        return "", "", "", ""
    kind, api_version = data.get("kind"), data.get("apiVersion")
    metadata = data.get("metadata")
    name = namespace = None
    if isinstance(metadata, Mapping):
        name, namespace = metadata.get("name"), metadata.get("namespace")
    if not isinstance(namespace, str) or not namespace:
        namespace = default_namespace
    return tuple(value if isinstance(value, str) else "" for value in (kind, api_version, namespace, name))  # type: ignore[return-value]


def _plain(value: object, path: FieldPath, problems: Problems, depth: int) -> Any:
    """``value`` as JSON-like data (dict with string keys, list, str, int, float, bool, None)."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, Mapping | list | tuple) and depth <= 0:
        problems.append((path, "nesting is too deep"))
        return None
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = _key(key)
            if name is None:
                problems.append((path, f"map key {_short(key)} is not a string or number"))
                continue
            out[name] = _plain(item, (*path, name), problems, depth - 1)
        return out
    if isinstance(value, list | tuple):
        return [_plain(item, (*path, index), problems, depth - 1) for index, item in enumerate(value)]
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    problems.append((path, f"a value of type {type(value).__name__} has no JSON form"))
    return None


def _key(key: object) -> str | None:
    if isinstance(key, str):
        return key
    if isinstance(key, bool):
        return "true" if key else "false"
    if key is None:
        return "null"
    if isinstance(key, int | float):
        return str(key)
    if isinstance(key, datetime.datetime | datetime.date):
        return key.isoformat()
    return None


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _load(
    spec: KindSpec,
    data: Mapping[str, Any],
    api_version: str,
    locate: Callable[[FieldPath], Position],
    default_namespace: str,
) -> DocumentResult:
    problems: Problems = []
    for key in data:
        if key not in _ENVELOPE:
            problems.append(((key,), f'unknown field "{key}"'))
    try:
        metadata = structure(ObjectMeta, data.get("metadata") or {}, ("metadata",), problems)
        if not spec.cluster_scoped and not metadata.namespace and default_namespace:
            metadata = attrs.evolve(metadata, namespace=default_namespace)
        spec_data = data.get("spec", _ABSENT)
        if spec_data is _ABSENT:
            spec_data = {}
            if spec.spec_required:
                # The API server says "spec: Required value" and nothing about the fields of the missing spec.
                problems.append((("spec",), "Required value"))
                body: Any = structure(spec.spec_type, spec_data, ("spec",), [])
            else:
                body = structure(spec.spec_type, spec_data, ("spec",), problems)
        else:
            body = structure(spec.spec_type, spec_data, ("spec",), problems)
        findings = [(Severity.ERROR, path, message) for path, message in problems]
        context = ValidationContext(metadata, path=("metadata",))
        _check_metadata(spec, metadata, context)
        if spec.validate is not None:
            spec.validate(body, ValidationContext(metadata, findings=context.findings, raw=spec_data))
    except Exception as error:  # a bug in a rule must not abort the load of every other document
        _log.exception("validating a %s raised", spec.kind)
        _, _, namespace, name = _identity(data, default_namespace)
        message = f"internal error while validating: {type(error).__name__}: {_short(str(error))} (a mesh_config bug)"
        meta = ObjectMeta(name=name, namespace=namespace)
        return _result(None, [(Severity.ERROR, (), message)], locate, kind=spec.kind, metadata=meta)
    findings += _without_follow_ups(context.findings, [path for path, _ in problems])
    resource = Resource(api_version, spec.kind, metadata, body, freeze(data.get("status")))
    ok = not any(severity is Severity.ERROR for severity, _, _ in findings)
    return _result(resource if ok else None, findings, locate, kind=spec.kind, metadata=metadata)


def _check_metadata(spec: KindSpec, metadata: ObjectMeta, ctx: ValidationContext) -> None:
    name = metadata.name
    if not name:
        if not metadata.generate_name:
            ctx.error("name is required", "name")
    elif len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        ctx.error(f"name {name!r} must be a lower-case DNS subdomain (letters, digits, '-' and '.')", "name")
    namespace = metadata.namespace
    if spec.cluster_scoped and namespace:
        ctx.error(f"{spec.kind} is cluster-scoped and takes no namespace", "namespace")
    elif namespace and (len(namespace) > 63 or not _DNS_LABEL.match(namespace)):
        ctx.error(f"namespace {namespace!r} must be a lower-case DNS label", "namespace")
    for key, value in metadata.labels.items():
        problem = _label_problem(key, value)
        if problem:
            ctx.error(problem, "labels", key)
    for key in metadata.annotations:
        problem = _label_problem(key, "")
        if problem:
            ctx.error(problem, "annotations", key)
    for forbidden in _FORBIDDEN_ANNOTATIONS:
        if forbidden in metadata.annotations:
            ctx.error(f"the annotation {forbidden!r} is reserved and may not be set", "annotations", forbidden)
    dry_run = metadata.annotations.get(_DRY_RUN)
    if dry_run is not None:
        if spec.kind != "AuthorizationPolicy":
            ctx.error(f"{_DRY_RUN} is supported only on AuthorizationPolicy", "annotations", _DRY_RUN)
        elif dry_run not in _PARSE_BOOL:
            ctx.error(f"{_DRY_RUN} must be 'true' or 'false', not {dry_run!r}", "annotations", _DRY_RUN)


def _label_problem(key: str, value: str) -> str | None:
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        return f"key {key!r}: prefix {prefix!r} must be a DNS subdomain"
    if not name or len(name) > 63 or not _LABEL_NAME.match(name):
        return f"key {key!r}: name part must be 1-63 letters, digits, '-', '_' or '.', starting and ending alphanumeric"
    if value and (len(value) > 63 or not _LABEL_NAME.match(value)):
        return f"label value {value!r} must be at most 63 letters, digits, '-', '_' or '.'"
    return None


def _follows(finding: FieldPath, broken: FieldPath) -> bool:
    """True when a finding is about a broken field, something inside it, or the object that holds it.

    A schema problem anywhere inside a field of the spec leaves that whole field at its default (the rules
    see ``portLevelMtls: {}`` when one of its entries is bad), so findings at or below it only repeat it.
    """
    dropped = broken[:2] if broken[:1] in (("spec",), ("metadata",)) else broken
    return finding[: len(dropped)] == dropped or finding == broken[:-1]


def _without_follow_ups(
    findings: list[tuple[Severity, FieldPath, str]], broken: list[FieldPath]
) -> list[tuple[Severity, FieldPath, str]]:
    """Drop semantic findings about fields that already failed the schema (they would only repeat it)."""
    return [finding for finding in findings if not any(_follows(finding[1], path) for path in broken)]


def _result(
    resource: Resource[Any] | None,
    findings: list[tuple[Severity, FieldPath, str]],
    locate: Callable[[FieldPath], Position],
    *,
    kind: str = "",
    metadata: ObjectMeta | None = None,
) -> DocumentResult:
    meta = metadata or ObjectMeta()
    diagnostics = tuple(
        Diagnostic(
            severity=severity,
            message=message,
            position=locate(path),
            kind=kind,
            namespace=meta.namespace,
            name=meta.name,
            path=path,
        )
        for severity, path, message in findings
    )
    return DocumentResult(resource, diagnostics, kind=kind)
