"""CRD rules on how a policy attaches to workloads: selector, targetRef and targetRefs (private).

``rules.py`` holds Istio's webhook rules (and some CRD rules) for these fields; this module adds what it
leaves out: the CEL rule on which of them may be set (with each CRD's own wording), ``maxItems`` on
``targetRefs``, and the schema of a target reference without the webhook's kind check (EnvoyFilter's
webhook does not check kinds).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from mesh_config.common import PolicyTargetReference
from mesh_config.validation import ValidationContext

MAX_TARGET_REFS = 16
"""The CRD's ``maxItems`` on ``targetRefs``."""

GROUP_PATTERN = r"^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
KIND_PATTERN = r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$"
_GROUP = re.compile(GROUP_PATTERN)
_KIND = re.compile(KIND_PATTERN)


def check_attachment_choice(ctx: ValidationContext, message: str, *fields: str) -> None:
    """The CRD's CEL rule that at most one of ``fields`` is written (CEL ``has()``: an empty value counts)."""
    if sum(1 for name in fields if ctx.has(name)) > 1:
        ctx.rule(message)


def check_target_ref_schema(ctx: ValidationContext, ref: PolicyTargetReference, *segments: str | int) -> None:
    """The CRD schema of one PolicyTargetReference: lengths, patterns and the namespace CEL rule."""
    here = ctx.at(*segments)
    if len(ref.group) > 253:
        here.max_length(253, "group")
    elif not _GROUP.search(ref.group):
        here.pattern(GROUP_PATTERN, "group")
    if here.has("kind") and not ref.kind:
        here.min_length(1, "kind")
    elif len(ref.kind) > 63:
        here.max_length(63, "kind")
    elif ref.kind and not _KIND.search(ref.kind):
        here.pattern(KIND_PATTERN, "kind")
    if here.has("name") and not ref.name:
        here.min_length(1, "name")
    elif len(ref.name) > 253:
        here.max_length(253, "name")
    if ref.namespace:
        here.rule("cross namespace referencing is not currently supported", "namespace", json_type="string")


def check_target_refs_count(ctx: ValidationContext, refs: Sequence[PolicyTargetReference], field: str) -> None:
    """The CRD's ``maxItems`` on ``targetRefs``."""
    if len(refs) > MAX_TARGET_REFS:
        ctx.max_items(MAX_TARGET_REFS, field)
