"""Resolve a method by server reflection and build its request from JSON.

Like ghz without ``--proto`` (ghz ≥ 0.30 uses reflection; reference/performance.md §2): the server's reflection
service hands us the file descriptors, a private :class:`~google.protobuf.descriptor_pool.DescriptorPool` turns them
into message classes, and the call then needs nothing generated at build time.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from google.protobuf.message import Message
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase


class UsageError(Exception):
    """A bad method name, unknown service/method, streaming method or bad request JSON (exit code 2)."""


class Unreachable(Exception):
    """The server cannot be reached, or does not serve reflection (exit code 3)."""


@dataclass(frozen=True)
class MethodSpec:
    """A resolved unary method: its HTTP/2 path and request/response message classes."""

    service: str  # "grpc.health.v1.Health"
    method: str  # "Check"
    request_class: type[Message]
    response_class: type[Message]

    @property
    def path(self) -> str:
        """The call path, ``/pkg.Service/Method``."""
        return f"/{self.service}/{self.method}"

    def request_from_json(self, data: str) -> Message:
        """Parse ``data`` (a JSON object, proto3 JSON mapping) into the request type. UsageError when invalid."""
        return parse_request(self.request_class, data)


def split_method(call: str) -> tuple[str, str]:
    """``"pkg.Service/Method"`` or ``"pkg.Service.Method"`` → (``"pkg.Service"``, ``"Method"``)."""
    name = call.strip().lstrip("/")
    if "/" in name:
        service, _, method = name.rpartition("/")
    else:
        service, _, method = name.rpartition(".")
    if not service or not method or "/" in service:
        raise UsageError(f"method must be pkg.Service/Method or pkg.Service.Method, got {call!r}")
    return service, method


def parse_request(request_class: type[Message], data: str) -> Message:
    """JSON → ``request_class``; UsageError naming the type when ``data`` is not valid JSON for it."""
    try:
        obj = json.loads(data or "{}")
    except json.JSONDecodeError as e:
        raise UsageError(f"-d is not valid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise UsageError(f"-d must be a JSON object for {request_class.DESCRIPTOR.full_name}")
    try:
        return json_format.ParseDict(obj, request_class())
    except json_format.ParseError as e:
        text = " ".join(str(e).split())
        raise UsageError(f"-d does not match {request_class.DESCRIPTOR.full_name}: {text}") from None


def wait_reachable(channel: grpc.Channel, address: str, timeout: float) -> None:
    """Wait up to ``timeout`` seconds for the channel to connect; Unreachable otherwise. A plain ``host:port``
    that refuses TCP connections fails at once (the channel itself would keep retrying until the timeout)."""
    _probe_tcp(address, timeout)
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout)
    except grpc.FutureTimeoutError:
        raise Unreachable(f"cannot connect to {address} within {timeout:g} s") from None


def _probe_tcp(address: str, timeout: float) -> None:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "/" in host:
        return  # a resolver URI (dns:///…, unix:…): leave it to the channel
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=min(timeout, 5.0)):
            pass
    except ConnectionRefusedError:
        raise Unreachable(f"cannot connect to {address}: connection refused") from None
    except OSError:
        return  # timeouts, DNS hiccups: the channel's own wait decides


def resolve(channel: grpc.Channel, call: str, *, address: str = "", connect_timeout: float = 5.0) -> MethodSpec:
    """Resolve ``call`` on the server behind ``channel`` (a *sync* channel: the reflection client is synchronous).

    Raises :class:`Unreachable` when the server cannot be reached or has no reflection service, and
    :class:`UsageError` for an unknown service or method, or a streaming method (only unary calls are driven).
    """
    service, method = split_method(call)
    wait_reachable(channel, address or "server", connect_timeout)
    db = ProtoReflectionDescriptorDatabase(channel)
    pool = descriptor_pool.DescriptorPool(db)
    try:
        sdesc = pool.FindServiceByName(service)
    except KeyError:
        raise UsageError(f"unknown service {service!r}; the server offers: {_services(db)}") from None
    except grpc.RpcError as e:
        raise _rpc_problem(e, address) from None
    mdesc = sdesc.methods_by_name.get(method)
    if mdesc is None:
        known = ", ".join(sorted(sdesc.methods_by_name)) or "none"
        raise UsageError(f"service {service} has no method {method!r}; its methods: {known}")
    if mdesc.client_streaming or mdesc.server_streaming:
        raise UsageError(f"{service}/{method} is a streaming method; only unary methods can be load-tested")
    return MethodSpec(
        service=service,
        method=method,
        request_class=message_factory.GetMessageClass(mdesc.input_type),
        response_class=message_factory.GetMessageClass(mdesc.output_type),
    )


def _services(db: ProtoReflectionDescriptorDatabase) -> str:
    try:
        return ", ".join(sorted(db.get_services())) or "none"
    except (grpc.RpcError, KeyError):
        return "(cannot list)"


def _rpc_problem(e: grpc.RpcError, address: str) -> Exception:
    code: Any = e.code() if hasattr(e, "code") else None
    details = e.details() if hasattr(e, "details") else str(e)
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return Unreachable(f"{address or 'the server'} does not serve gRPC reflection")
    name = code.name if isinstance(code, grpc.StatusCode) else "ERROR"
    return Unreachable(f"reflection call to {address or 'the server'} failed: {name}: {details}")
