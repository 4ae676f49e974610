"""Errors raised by mesh_model.

Every error the package raises derives from one root, so a caller can catch them all::

    MeshModelError
     +-- InvalidValueError (also a ValueError): a value could not be parsed or is out of range
     |    +-- InvalidHostError       host names and wildcards
     |    +-- InvalidProtocolError   protocol names
     |    +-- InvalidLabelError      label keys, values and selectors
     |    +-- InvalidLocalityError   region/zone/subzone strings
     |    +-- InvalidSpiffeIdError   spiffe://<trust-domain>/ns/<ns>/sa/<sa>
     |    +-- InvalidProxyError      Envoy node ids and node metadata
     |    +-- InvalidServiceError    services, ports and endpoints that break their own invariants
     +-- RegistryError: a registry was asked for something it cannot do

Messages always quote the offending value (shortened when it is very long), so that the user can find it.
"""

from __future__ import annotations

__all__ = [
    "InvalidHostError",
    "InvalidLabelError",
    "InvalidLocalityError",
    "InvalidProtocolError",
    "InvalidProxyError",
    "InvalidServiceError",
    "InvalidSpiffeIdError",
    "InvalidValueError",
    "MeshModelError",
    "RegistryError",
]


class MeshModelError(Exception):
    """The root of every error raised by mesh_model."""


class InvalidValueError(MeshModelError, ValueError):
    """A value could not be parsed, or breaks a rule of the model."""


class InvalidHostError(InvalidValueError):
    """A host name or host wildcard is malformed."""


class InvalidProtocolError(InvalidValueError):
    """A protocol name is not one Istio knows."""


class InvalidLabelError(InvalidValueError):
    """A label key, label value or label selector is malformed."""


class InvalidLocalityError(InvalidValueError):
    """A locality string is malformed."""


class InvalidSpiffeIdError(InvalidValueError):
    """A SPIFFE id is malformed or is not an Istio workload identity."""


class InvalidProxyError(InvalidValueError):
    """An Envoy node id or node metadata cannot be understood."""


class InvalidServiceError(InvalidValueError):
    """A service, a service port or an endpoint breaks its own invariants."""


class RegistryError(MeshModelError):
    """A service registry was asked for something it cannot do."""
