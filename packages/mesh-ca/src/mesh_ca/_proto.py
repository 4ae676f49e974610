"""Istio's CA API messages, built at import time from a descriptor of ``security/v1alpha1/ca.proto`` (private).

The descriptor matches istio/api's file field for field, so the messages are the same on the wire as the ones
Istio's generated code reads and writes::

    package istio.v1.auth;
    message IstioCertificateRequest {
      string csr = 1;
      int64 validity_duration = 3;
      google.protobuf.Struct metadata = 4;
    }
    message IstioCertificateResponse { repeated string cert_chain = 1; }
    service IstioCertificateService {
      rpc CreateCertificate(IstioCertificateRequest) returns (IstioCertificateResponse);
    }

Field number 2 of the request is unused, as in Istio. The file goes into protobuf's default pool, so its
``metadata`` is the ordinary :class:`google.protobuf.struct_pb2.Struct`; when a generated ``ca_pb2`` module
was imported first, its descriptor is used instead (the two are the same).
"""

from __future__ import annotations

from typing import Any, Final

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, struct_pb2

__all__ = [
    "CREATE_CERTIFICATE_METHOD",
    "FILE_NAME",
    "PACKAGE",
    "SERVICE_NAME",
    "IstioCertificateRequest",
    "IstioCertificateResponse",
    "file_descriptor_proto",
]

FILE_NAME: Final = "security/v1alpha1/ca.proto"
PACKAGE: Final = "istio.v1.auth"
SERVICE_NAME: Final = f"{PACKAGE}.IstioCertificateService"
CREATE_CERTIFICATE_METHOD: Final = f"/{SERVICE_NAME}/CreateCertificate"
"""The full gRPC method path of ``CreateCertificate``."""

_F = descriptor_pb2.FieldDescriptorProto


def file_descriptor_proto() -> descriptor_pb2.FileDescriptorProto:
    """A fresh copy of the ``ca.proto`` file descriptor."""
    proto = descriptor_pb2.FileDescriptorProto(
        name=FILE_NAME,
        package=PACKAGE,
        syntax="proto3",
        dependency=[struct_pb2.DESCRIPTOR.name],
    )
    proto.options.go_package = "istio.io/api/security/v1alpha1"
    request = proto.message_type.add(name="IstioCertificateRequest")
    request.field.add(name="csr", json_name="csr", number=1, label=_F.LABEL_OPTIONAL, type=_F.TYPE_STRING)
    request.field.add(
        name="validity_duration",
        json_name="validityDuration",
        number=3,
        label=_F.LABEL_OPTIONAL,
        type=_F.TYPE_INT64,
    )
    request.field.add(
        name="metadata",
        json_name="metadata",
        number=4,
        label=_F.LABEL_OPTIONAL,
        type=_F.TYPE_MESSAGE,
        type_name=".google.protobuf.Struct",
    )
    response = proto.message_type.add(name="IstioCertificateResponse")
    response.field.add(name="cert_chain", json_name="certChain", number=1, label=_F.LABEL_REPEATED, type=_F.TYPE_STRING)
    service = proto.service.add(name="IstioCertificateService")
    service.method.add(
        name="CreateCertificate",
        input_type=f".{PACKAGE}.IstioCertificateRequest",
        output_type=f".{PACKAGE}.IstioCertificateResponse",
    )
    return proto


def _load() -> Any:
    pool = descriptor_pool.Default()
    try:
        return pool.FindFileByName(FILE_NAME)
    except KeyError:
        return pool.Add(file_descriptor_proto())


_FILE: Final = _load()

# The classes are made at run time, so their attributes are unknown to the type checker: they are typed Any.
IstioCertificateRequest: Final[Any] = message_factory.GetMessageClass(
    _FILE.message_types_by_name["IstioCertificateRequest"]
)
"""``istio.v1.auth.IstioCertificateRequest``: ``csr`` (PEM), ``validity_duration`` (seconds), ``metadata``."""

IstioCertificateResponse: Final[Any] = message_factory.GetMessageClass(
    _FILE.message_types_by_name["IstioCertificateResponse"]
)
"""``istio.v1.auth.IstioCertificateResponse``: ``cert_chain``, one PEM per element, leaf first, root last."""
