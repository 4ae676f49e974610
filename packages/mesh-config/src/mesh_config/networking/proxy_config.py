"""ProxyConfig (networking.istio.io): per-workload proxy settings."""

from __future__ import annotations

from typing import final

import attrs

from mesh_config.common import WorkloadSelector
from mesh_config.kinds import KindSpec, register_kind
from mesh_config.rules import check_selector
from mesh_config.types import FrozenDict, Int32, mapping, optional, string
from mesh_config.validation import ValidationContext

__all__ = ["PROXY_CONFIG", "ProxyConfig", "ProxyImage", "validate_proxy_config"]

MAX_ENVIRONMENT_VALUE = 2048
"""The CRD's ``maxLength`` on each value of ``environmentVariables``."""


@final
@attrs.frozen
class ProxyImage:
    """``ProxyImage``: which proxy image a workload runs.

    Attributes:
        image_type: the image flavour, e.g. ``default``, ``debug`` or ``distroless``.
    """

    image_type: str = string()


@final
@attrs.frozen
class ProxyConfig:
    """The spec of a ProxyConfig.

    Attributes:
        selector: the workloads it applies to; none means the whole namespace (the mesh in the root namespace).
        concurrency: worker threads; 0 uses every core, unset keeps the default.
        environment_variables: extra environment variables for the proxy.
        image: the proxy image to run.
    """

    selector: WorkloadSelector | None = optional()
    concurrency: Int32 | None = optional()
    environment_variables: FrozenDict[str, str] = mapping()
    image: ProxyImage | None = optional()


def validate_proxy_config(spec: ProxyConfig, ctx: ValidationContext) -> None:
    """The CRD rules and Istio's webhook rules for ProxyConfig."""
    check_selector(ctx, spec.selector, "selector")
    # The CRD's `minimum: 0` and the webhook's "concurrency must be greater than or equal to 0" are one rule;
    # the API server rejects first, so its wording is the one users see.
    if spec.concurrency is not None and spec.concurrency < 0:
        ctx.minimum(0, "concurrency")
    for name, value in spec.environment_variables.items():
        if len(value) > MAX_ENVIRONMENT_VALUE:
            ctx.max_length(MAX_ENVIRONMENT_VALUE, "environmentVariables", name)


PROXY_CONFIG = register_kind(
    KindSpec(
        kind="ProxyConfig",
        group="networking.istio.io",
        versions=("v1beta1",),
        spec_type=ProxyConfig,
        validate=validate_proxy_config,
        plural="proxyconfigs",
    )
)
