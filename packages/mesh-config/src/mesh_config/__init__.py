"""mesh_config: Istio's config API for Python.

Load Istio YAML unchanged, get every problem with its file, line and field, and work with typed objects::

    from mesh_config import load_paths

    result = load_paths(["config/"])
    for diagnostic in result.diagnostics:
        print(diagnostic.format())
    for resource in result.resources:
        print(resource.kind, resource.namespace, resource.name)
"""

from mesh_config._version import __version__
from mesh_config.common import PolicyTargetReference, WorkloadSelector
from mesh_config.diagnostics import Diagnostic, FieldPath, Position, Severity, format_path
from mesh_config.directory_store import DirectoryConfigStore
from mesh_config.document import DocumentResult, load_object
from mesh_config.dump import to_dict, to_yaml
from mesh_config.errors import (
    AlreadyExistsError,
    ConfigError,
    ConflictError,
    InvalidConfigError,
    LoadError,
    NotFoundError,
    StoreError,
)
from mesh_config.extensions import Telemetry, TrafficExtension, WasmPlugin
from mesh_config.file_registry import FileRegistry
from mesh_config.index import PushContext
from mesh_config.kinds import ISTIO_GROUPS, KindSpec, all_kinds, kind_for, register_kind
from mesh_config.limits import LoadLimits
from mesh_config.loader import CONFIG_SUFFIXES, LoadResult, load_file, load_paths, load_text
from mesh_config.memory_store import InMemoryConfigStore
from mesh_config.meshconfig import MeshConfig, MeshConfigResult, default_mesh_config, load_mesh_config
from mesh_config.meta import ObjectMeta, Resource
from mesh_config.networking import (
    DestinationRule,
    EnvoyFilter,
    Gateway,
    ProxyConfig,
    ServiceEntry,
    Sidecar,
    VirtualService,
    WorkloadEntry,
    WorkloadGroup,
)
from mesh_config.poller import Poller
from mesh_config.registry_adapter import ServiceEntryRegistry
from mesh_config.registry_file import RegistryFileResult, load_registry_file, load_registry_text
from mesh_config.security import AuthorizationPolicy, PeerAuthentication, RequestAuthentication
from mesh_config.store import ConfigStore
from mesh_config.types import Duration, FrozenDict
from mesh_config.validation import ValidationContext

__all__ = [
    "CONFIG_SUFFIXES",
    "ISTIO_GROUPS",
    "AlreadyExistsError",
    "AuthorizationPolicy",
    "ConfigError",
    "ConfigStore",
    "ConflictError",
    "DestinationRule",
    "Diagnostic",
    "DirectoryConfigStore",
    "DocumentResult",
    "Duration",
    "EnvoyFilter",
    "FieldPath",
    "FileRegistry",
    "FrozenDict",
    "Gateway",
    "InMemoryConfigStore",
    "InvalidConfigError",
    "KindSpec",
    "LoadError",
    "LoadLimits",
    "LoadResult",
    "MeshConfig",
    "MeshConfigResult",
    "NotFoundError",
    "ObjectMeta",
    "PeerAuthentication",
    "PolicyTargetReference",
    "Poller",
    "Position",
    "ProxyConfig",
    "PushContext",
    "RegistryFileResult",
    "RequestAuthentication",
    "Resource",
    "ServiceEntry",
    "ServiceEntryRegistry",
    "Severity",
    "Sidecar",
    "StoreError",
    "Telemetry",
    "TrafficExtension",
    "ValidationContext",
    "VirtualService",
    "WasmPlugin",
    "WorkloadEntry",
    "WorkloadGroup",
    "WorkloadSelector",
    "__version__",
    "all_kinds",
    "default_mesh_config",
    "format_path",
    "kind_for",
    "load_file",
    "load_mesh_config",
    "load_object",
    "load_paths",
    "load_registry_file",
    "load_registry_text",
    "load_text",
    "register_kind",
    "to_dict",
    "to_yaml",
]
