"""Rules shared by the security.istio.io kinds (private): where a policy applies, and string lists.

AuthorizationPolicy and RequestAuthentication choose their workloads with ``selector``, ``targetRef`` or
``targetRefs``; PeerAuthentication with ``selector`` only. The CRD layer adds a few limits that
:mod:`mesh_config.rules` does not check (``maxItems`` of ``targetRefs``); they are here.
"""

from __future__ import annotations

from collections.abc import Sequence

from mesh_config.common import PolicyTargetReference, WorkloadSelector
from mesh_config.rules import check_selector, check_target_ref
from mesh_config.validation import ValidationContext

__all__ = [
    "MAX_MATCH_LABELS",
    "MAX_TARGET_REFS",
    "check_policy_selector",
    "check_targets",
    "empty_items",
    "wildcard_inside",
]

MAX_MATCH_LABELS = 4096
"""The CRD's ``maxProperties`` of ``selector.matchLabels``."""

MAX_TARGET_REFS = 16
"""The CRD's ``maxItems`` of ``targetRefs``."""


def check_policy_selector(ctx: ValidationContext, selector: WorkloadSelector | None) -> None:
    """``selector``: Istio's ``validateWorkloadSelector`` plus the CRD rules on ``matchLabels``."""
    check_selector(ctx, selector, "selector")


def check_targets(
    ctx: ValidationContext,
    selector: WorkloadSelector | None,
    target_ref: PolicyTargetReference | None,
    target_refs: Sequence[PolicyTargetReference],
) -> None:
    """``selector``, ``targetRef`` and ``targetRefs``: at most one of them, each well formed.

    The CRD counts a field as set when it is written, even empty (CEL's ``has()``), so ``targetRefs: []``
    next to a selector is refused; Istio's webhook says the same of non-empty ones.
    """
    written = [name for name in ("selector", "targetRef", "targetRefs") if ctx.has(name)]
    if len(written) > 1:
        ctx.rule("only one of targetRefs or selector can be set")
    check_policy_selector(ctx, selector)
    check_target_ref(ctx, target_ref, "targetRef")
    if len(target_refs) > MAX_TARGET_REFS:
        ctx.max_items(MAX_TARGET_REFS, "targetRefs")
    for index, ref in enumerate(target_refs):
        check_target_ref(ctx, ref, "targetRefs", index)


def empty_items(ctx: ValidationContext, values: Sequence[str], *segments: str | int) -> None:
    """The CRD's ``minLength: 1`` on each item of a list of strings."""
    for index, value in enumerate(values):
        if not value:
            ctx.min_length(1, *segments, index)


def wildcard_inside(value: str) -> bool:
    """True when ``*`` appears where Istio matches it literally: anywhere but a leading or trailing ``*``.

    Istio's string matchers treat ``*`` alone as "anything", ``*suffix`` as a suffix match and ``prefix*``
    as a prefix match; any other ``*`` (``a*b``, or the second star of ``*a*``) is an ordinary character.
    """
    if value == "*":
        return False
    if "*" in value[1:-1]:
        return True
    return len(value) > 1 and value.startswith("*") and value.endswith("*")
