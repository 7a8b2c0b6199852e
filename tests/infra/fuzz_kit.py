"""Descriptor-driven fuzzing of gRPC services (hypothesis): request strategies built from the proto descriptors of
every RPC, mutated wire bytes, and a raw-bytes caller that reports the status code of each call.

- :func:`rpcs` lists every method of the four Vantage services from the generated descriptors (a new RPC is fuzzed
  without touching this file).
- :func:`messages` draws *valid but odd* messages of a descriptor: every field optional; strings from a pool of
  hostile values (path traversal, ``/proc/self/environ``, NUL and control characters, RTL marks, emoji, CSV formula
  cells, URL-breaking characters, huge strings) and arbitrary text; integers at their type's extremes; NaN and
  infinities; enum numbers outside the declared values (proto3 enums are open); repeated fields, maps and nested
  messages to a bounded depth.
- :func:`wire_bytes` draws request bytes: a message's serialisation, mutated (bit flips, truncation, inserted or
  appended garbage, a string field holding invalid UTF-8), or plain random bytes.
- :class:`RawCaller` sends bytes with no client-side serialisation (``request_serializer=None``) over a sync channel
  and returns the status code name (``"OK"`` included), so the server alone decides what the bytes mean.

A :class:`Profile` bounds what is drawn: small lists and strings for RPCs that start (sandboxed) paid work.
"""

from __future__ import annotations

import math
import os
import struct
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import grpc
from google.protobuf import descriptor as _d
from google.protobuf import message_factory
from hypothesis import strategies as st

from vantage.extraction.v1 import extraction_pb2
from vantage.inference.v1 import inference_pb2
from vantage.orchestrator.v1 import orchestrator_pb2
from vantage.search.v1 import search_pb2

#: service key (as in shared.procs) → generated module whose descriptor holds it.
SERVICES = {
    "search": (search_pb2, "SearchService"),
    "inference": (inference_pb2, "InferenceService"),
    "extraction": (extraction_pb2, "ExtractionService"),
    "orchestrator": (orchestrator_pb2, "OrchestratorService"),
}

#: RPCs that start paid provider work (every provider is the sandbox in these tests): fewer, smaller examples.
PAID = frozenset({
    "SearchService/Search", "SearchService/SearchCompany",
    "InferenceService/Complete", "InferenceService/CompleteStream", "InferenceService/CompleteBatch",
    "OrchestratorService/StartRun", "OrchestratorService/ResumeRun", "OrchestratorService/RetryFailed",
})

#: Hostile and careless string values seen in the wild (issue 11) plus values that mean something to a service.
ODD_STRINGS: tuple[str, ...] = (
    "", " ", "\x00", "\x00\x01\x02", "\t\r\n", "\x1b[31mred\x1b[0m", "\u202egnp.exe", "\ufeff", "😀" * 8,
    "../../../admin/delete-everything?confirm=yes&x=", "../x", "..", "/", "/proc/self/environ", "/etc/passwd",
    "C:\\Windows\\win.ini", "%2e%2e%2f", "a/b?c=d#e", "http://169.254.169.254/latest/meta-data/", "file:///etc/hosts",
    "=HYPERLINK(\"http://x\")", "@SUM(1+1)", "+1+1", "-2", "' OR 1=1 --", "${jndi:ldap://x}", "{{7*7}}",
    "null", "NaN", "-1", "0", "1e309", "true", "{}", "[]", '{"type":"object"}', '{"$ref":"#"}',
    "chatgpt", "perplexity", "gpt-4.1", "claude-sonnet-5", "sonar", "llama-9000", "GPT-4.1", "o3",
    "US", "GB", "XX", "us", "basic", "advanced", "fast", "ultra-fast", "deep",
    "Together AI", "together.ai", "s_" + "a" * 30, "sd_" + "0" * 18,
    "00000000-0000-0000-0000-000000000000", "Bearer bd-0123456789abcdef",
)

ANSWER = (
    "Here are the best GPU clouds for training:\n\n1. **CoreWeave** – large H100 clusters "
    "([coreweave.com](https://www.coreweave.com/?utm_source=chatgpt)).\n2. **Together AI** – fast inference, see "
    "https://www.together.ai/pricing.\n3. **Lambda Labs** – on-demand instances.\n"
)
#: Plausible values by field name: half of the strings drawn for these fields come from here, so that fuzzed
#: requests get past validation into the services' real work (search, routing, extraction, runs) as well.
#: ``run_id`` / ``upload_id`` draw from :data:`LIVE_IDS` too, filled by the test with ids that exist.
HINTS: dict[str, tuple[str, ...]] = {
    "model": ("gpt-4.1", "chatgpt", "perplexity", "claude-sonnet-5", "sonar", "gpt-4.1-mini"),
    "models": ("gpt-4.1", "chatgpt", "claude-sonnet-5", "sonar"),
    "location": ("US", "GB", "DE", ""),
    "locations": ("US", "GB", "FR"),
    "company": ("Together AI", "CoreWeave", "Lambda", "Acme Corp"),
    "org_name": ("Together AI", "CoreWeave"),
    "name": ("Together AI", "run-1", "Lambda Labs"),
    "domain": ("together.ai", "coreweave.com", "example.com"),
    "org_domain": ("together.ai", "coreweave.com"),
    "include_domains": ("together.ai", "github.com"),
    "exclude_domains": ("reddit.com",),
    "query": ("GPU cloud providers", "Together AI funding"),
    "search_depth": ("basic", "advanced", "fast", "ultra-fast"),
    "questions": ("Which GPU clouds are best for training?", "Who sells H100s by the hour?"),
    "questions_text": ("Which GPU clouds are best for training?\nWho rents H100s?\n",),
    "known_competitors": ("CoreWeave", "Lambda", "Crusoe"),
    "name_variations": ("Together", "together.ai"),
    "answer_markdown": (ANSWER,),
    "content": ("Which GPU clouds are best for training?", "Reply with JSON."),
    "role": ("user", "system", "assistant"),
    "input_csv": ("company,domain\nTogether AI,together.ai\nCoreWeave,coreweave.com\n",),
    "classification_json": ('{"tier":"HOT","score":90,"category":"Frontier pre-training","rationale":"x",'
                            '"sources":["https://together.ai"]}',),
    "json_schema": ('{"type":"object","properties":{"a":{"type":"string"}},"required":["a"]}',),
    "item_json_schema": ('{"type":"object","properties":{"a":{"type":"string"}}}',),
    "input_json": ('{"name":"Together AI"}',),
    "instruction": ("Add a column with the company's HQ country.",),
    "url": ("https://www.together.ai/pricing", "https://coreweave.com"),
    "search_result_urls": ("https://www.together.ai/",),
    "snapshot_id": ("s_m2abcdef0123456789", "sd_0123456789abcdef"),
    "provider": ("brightdata_chatgpt", "brightdata_perplexity", "openai"),
    "schema_name": ("classification",),
    "title": ("Together AI",),
    "filename": ("companies.csv",),
}
#: Ids that exist in the stack under test (run ids, upload ids), added by the test before fuzzing.
LIVE_IDS: list[str] = []

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
UINT32 = (0, 2**32 - 1)
UINT64 = (0, 2**64 - 1)
_F = _d.FieldDescriptor


@dataclass(frozen=True)
class Profile:
    """Bounds of what is drawn: ``max_list`` items per repeated field, ``max_text`` characters of arbitrary text,
    ``long_strings`` lengths of the occasional huge string, ``depth`` of nested messages."""

    max_list: int = 4
    max_text: int = 40
    long_strings: tuple[int, ...] = (201, 5_000)
    depth: int = 3
    #: Draw only plausible values (hints, short words, small numbers, declared enum values): requests that get
    #: past validation into the real work.
    plausible: bool = False


SMALL = Profile()
#: Plausible requests (past validation, into the real work): few, small.
PLAUSIBLE = Profile(max_list=2, plausible=True, depth=4)
#: Paid RPCs: lists of ≤ 2 (each item may be a provider call), no huge strings.
PAID_SMALL = Profile(max_list=2, long_strings=(201,))
LARGE = Profile(max_list=30, max_text=200, long_strings=(201, 5_000, 100_000, 1_100_000))
#: Paid RPCs under the large run: still few items per call, but long strings.
PAID_LARGE = Profile(max_list=3, max_text=100, long_strings=(201, 5_000, 100_000))


@dataclass(frozen=True)
class Rpc:
    service: str  # key of SERVICES / shared.procs
    path: str  # "/pkg.Service/Method"
    short: str  # "Service/Method"
    input: _d.Descriptor
    client_streaming: bool
    server_streaming: bool

    @property
    def paid(self) -> bool:
        return self.short in PAID


def rpcs() -> list[Rpc]:
    """Every RPC of the four services, from the generated descriptors."""
    out = []
    for key, (module, name) in SERVICES.items():
        svc = module.DESCRIPTOR.services_by_name[name]
        for m in svc.methods:
            out.append(Rpc(key, f"/{svc.full_name}/{m.name}", f"{name}/{m.name}", m.input_type,
                           m.client_streaming, m.server_streaming))
    return out


# --- valid-but-odd messages ----------------------------------------------------------------------------------


def _strings(p: Profile) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(ODD_STRINGS),
        st.text(max_size=p.max_text),
        st.builds(lambda a, n: a * n, st.sampled_from(["a", "é", "😀", "../", "{", "[", "x\x00\u202e"]),
                  st.sampled_from(p.long_strings)),
    )


def _ints(lo: int, hi: int) -> st.SearchStrategy[int]:
    return st.one_of(
        st.integers(0, 20),
        st.sampled_from([lo, hi, 0, -1 if lo < 0 else 1, 1000, 1_000_001]).filter(lambda v: lo <= v <= hi),
        st.integers(lo, hi),
    )


def _plausible(f: _d.FieldDescriptor) -> st.SearchStrategy[object]:
    t = f.type
    if t == _F.TYPE_STRING:
        if f.name in ("run_id", "upload_id", "id", "member_ids", "idempotency_key"):
            return st.deferred(lambda: st.sampled_from(LIVE_IDS) if LIVE_IDS else st.just(""))
        if f.name in HINTS:
            return st.sampled_from(HINTS[f.name])
        return st.text("abcdefghij ", max_size=12)
    if t == _F.TYPE_BYTES:
        return st.binary(max_size=8)
    if t == _F.TYPE_BOOL:
        return st.booleans()
    if t in (_F.TYPE_DOUBLE, _F.TYPE_FLOAT):
        return st.sampled_from([0.0, 0.4, 0.5, 1.0])
    if t == _F.TYPE_ENUM:
        declared = [v.number for v in f.enum_type.values]
        return st.sampled_from([n for n in declared if n] or declared)
    return st.integers(0, 10)


def _scalar(f: _d.FieldDescriptor, p: Profile) -> st.SearchStrategy[object]:
    if p.plausible:
        return _plausible(f)
    t = f.type
    if t == _F.TYPE_STRING:
        if f.name in ("run_id", "upload_id", "id", "member_ids", "idempotency_key"):
            live = st.deferred(lambda: st.sampled_from(LIVE_IDS) if LIVE_IDS else st.just(""))
            return st.one_of(live, _strings(p))
        if f.name in HINTS:
            return st.one_of(st.sampled_from(HINTS[f.name]), _strings(p))
        return _strings(p)
    if t == _F.TYPE_BYTES:
        return st.binary(max_size=p.max_text)
    if t == _F.TYPE_BOOL:
        return st.booleans()
    if t in (_F.TYPE_DOUBLE, _F.TYPE_FLOAT):
        odd = st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 1e308, -1e308, 5e-324, 0.4, 1.0, 1.0001, -0.5])
        if t == _F.TYPE_FLOAT:
            return st.one_of(odd.map(lambda v: struct.unpack("f", struct.pack("f", v))[0]
                                     if abs(v) < 3e38 or not math.isfinite(v) else math.inf),
                             st.floats(width=32))
        return st.one_of(odd, st.floats())
    if t == _F.TYPE_ENUM:
        declared = [v.number for v in f.enum_type.values]
        return st.one_of(st.sampled_from(declared), st.sampled_from(declared), _ints(*INT32))
    if t in (_F.TYPE_INT32, _F.TYPE_SINT32, _F.TYPE_SFIXED32):
        return _ints(*INT32)
    if t in (_F.TYPE_INT64, _F.TYPE_SINT64, _F.TYPE_SFIXED64):
        return _ints(*INT64)
    if t in (_F.TYPE_UINT32, _F.TYPE_FIXED32):
        return _ints(*UINT32)
    if t in (_F.TYPE_UINT64, _F.TYPE_FIXED64):
        return _ints(*UINT64)
    raise TypeError(f"unhandled field type {t} of {f.full_name}")


def _is_map(f: _d.FieldDescriptor) -> bool:
    return f.type == _F.TYPE_MESSAGE and f.message_type.GetOptions().map_entry


def _repeated(f: _d.FieldDescriptor) -> bool:
    return f.is_repeated


@cache
def _fields_strategy(desc: _d.Descriptor, p: Profile, depth: int) -> st.SearchStrategy[dict[str, object]]:
    optional: dict[str, st.SearchStrategy[object]] = {}
    for f in desc.fields:
        if f.type == _F.TYPE_MESSAGE and not _is_map(f):
            if depth >= p.depth:
                continue
            one: st.SearchStrategy[object] = st.deferred(lambda f=f: _fields_strategy(f.message_type, p, depth + 1))
        elif _is_map(f):
            k = _scalar(f.message_type.fields_by_name["key"], p)
            vf = f.message_type.fields_by_name["value"]
            if vf.type == _F.TYPE_MESSAGE:
                if depth >= p.depth:
                    continue
                v: st.SearchStrategy[object] = _fields_strategy(vf.message_type, p, depth + 1)
            else:
                v = _scalar(vf, p)
            optional[f.name] = st.dictionaries(k, v, max_size=p.max_list)
            continue
        else:
            one = _scalar(f, p)
        optional[f.name] = st.lists(one, max_size=p.max_list) if _repeated(f) else one
    return st.fixed_dictionaries({}, optional=optional)


def _fill(msg: object, values: dict[str, object]) -> None:
    desc = msg.DESCRIPTOR  # type: ignore[attr-defined]
    for name, value in values.items():
        f = desc.fields_by_name[name]
        target = getattr(msg, name)
        if _is_map(f):
            vf = f.message_type.fields_by_name["value"]
            for k, v in value.items():  # type: ignore[attr-defined]
                if vf.type == _F.TYPE_MESSAGE:
                    _fill(target[k], v)
                else:
                    target[k] = v
        elif _repeated(f):
            if f.type == _F.TYPE_MESSAGE:
                for v in value:  # type: ignore[attr-defined]
                    _fill(target.add(), v)
            else:
                target.extend(value)
        elif f.type == _F.TYPE_MESSAGE:
            target.SetInParent()
            _fill(target, value)  # type: ignore[arg-type]
        else:
            setattr(msg, name, value)


def message_class(desc: _d.Descriptor) -> type:
    return message_factory.GetMessageClass(desc)


def messages(desc: _d.Descriptor, p: Profile = SMALL) -> st.SearchStrategy[object]:
    """Valid but odd messages of type ``desc`` (see the module docstring); a quarter of them plausible
    (:data:`PLAUSIBLE`) unless ``p`` is itself plausible."""
    cls = message_class(desc)

    def build(values: dict[str, object]) -> object:
        msg = cls()
        _fill(msg, values)
        return msg

    odd = _fields_strategy(desc, p, 0).map(build)
    if p.plausible:
        return odd
    return st.one_of(odd, odd, odd, _fields_strategy(desc, PLAUSIBLE, 0).map(build))


# --- corrupt bytes ---------------------------------------------------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string_paths(desc: _d.Descriptor, depth: int = 0) -> list[list[int]]:
    """Field-number paths to every string field (through singular and repeated messages), depth ≤ 3."""
    out: list[list[int]] = []
    for f in desc.fields:
        if f.type == _F.TYPE_STRING:
            out.append([f.number])
        elif f.type == _F.TYPE_MESSAGE and not _is_map(f) and depth < 3:
            out.extend([f.number, *rest] for rest in _string_paths(f.message_type, depth + 1))
    return out


def _nested(path: Sequence[int], payload: bytes) -> bytes:
    """Wire bytes putting ``payload`` as the length-delimited field at ``path``."""
    data = payload
    for number in reversed(path):
        data = _varint(number << 3 | 2) + _varint(len(data)) + data
    return data


INVALID_UTF8 = (b"\xff", b"\xc3\x28", b"\xe2\x28\xa1", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"ok\x80")


def wire_bytes(desc: _d.Descriptor, p: Profile = SMALL) -> st.SearchStrategy[bytes]:
    """Request bytes for ``desc``: mutated serialisations, invalid UTF-8 in a string field, random bytes."""
    valid = messages(desc, p).map(lambda m: m.SerializeToString())  # type: ignore[attr-defined]
    strings = _string_paths(desc)

    @st.composite
    def mutated(draw: st.DrawFn) -> bytes:
        data = bytearray(draw(valid))
        op = draw(st.sampled_from(["flip", "truncate", "insert", "append", "utf8", "utf8", "replace"]))
        if op == "utf8" and strings:
            path = draw(st.sampled_from(strings))
            junk = draw(st.sampled_from(INVALID_UTF8))
            return bytes(data) + _nested(path, b"x" * draw(st.integers(0, 3)) + junk)
        if op == "flip" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate" and data:
            del data[draw(st.integers(0, len(data) - 1)):]
        elif op == "insert":
            i = draw(st.integers(0, len(data)))
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "replace" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
        else:
            data += draw(st.binary(min_size=1, max_size=16))
        return bytes(data)

    return st.one_of(mutated(), st.binary(max_size=64))


# --- calling -------------------------------------------------------------------------------------------------


@dataclass
class Tally:
    """Status codes per RPC, and the examples that got a forbidden one."""

    codes: dict[str, Counter[str]] = field(default_factory=dict)
    bad: list[tuple[str, str, str, str]] = field(default_factory=list)  # (rpc, code, details, example)

    def add(self, rpc: str, code: str) -> None:
        self.codes.setdefault(rpc, Counter())[code] += 1

    def totals(self) -> Counter[str]:
        out: Counter[str] = Counter()
        for c in self.codes.values():
            out.update(c)
        return out

    def table(self) -> str:
        names = sorted(self.totals())
        width = max(len(r) for r in self.codes) if self.codes else 10
        lines = [" ".join([f"{'rpc':<{width}}", *(f"{n:>18}" for n in names)])]
        for rpc_name in sorted(self.codes):
            c = self.codes[rpc_name]
            lines.append(" ".join([f"{rpc_name:<{width}}", *(f"{c.get(n, 0):>18}" for n in names)]))
        t = self.totals()
        lines.append(" ".join([f"{'TOTAL':<{width}}", *(f"{t.get(n, 0):>18}" for n in names)]))
        return "\n".join(lines)


class RawCaller:
    """Calls an RPC with raw request bytes over a sync channel; returns (status code name, details)."""

    def __init__(self, address: str, token: str | None) -> None:
        self.channel = grpc.insecure_channel(address, options=[
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
        ])
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()

    def close(self) -> None:
        self.channel.close()

    def call(self, rpc: Rpc, requests: Sequence[bytes], timeout: float, *, auth: bool = True) -> tuple[str, str]:
        md = self.metadata if auth else ()
        try:
            if not rpc.client_streaming and not rpc.server_streaming:
                self.channel.unary_unary(rpc.path)(requests[0], timeout=timeout, metadata=md)
            elif not rpc.client_streaming:
                for _ in self.channel.unary_stream(rpc.path)(requests[0], timeout=timeout, metadata=md):
                    pass
            elif not rpc.server_streaming:
                self.channel.stream_unary(rpc.path)(iter(requests), timeout=timeout, metadata=md)
            else:
                for _ in self.channel.stream_stream(rpc.path)(iter(requests), timeout=timeout, metadata=md):
                    pass
        except grpc.RpcError as e:
            return e.code().name, e.details() or ""  # type: ignore[attr-defined]
        return "OK", ""


def rss_bytes(pid: int) -> int:
    """Resident set size of process ``pid`` (bytes), from /proc/<pid>/status (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


def preview(requests: Sequence[bytes], limit: int = 300) -> str:
    """A printable preview of the request bytes of a failing example."""
    text = " | ".join(repr(r[:limit]) + (f"…(+{len(r) - limit} bytes)" if len(r) > limit else "") for r in requests)
    return text[: limit * 3]


def iter_rpcs(names: str | None = None) -> Iterator[Rpc]:
    """:func:`rpcs`, restricted to ``names`` (comma-separated ``Service/Method`` substrings) when given."""
    wanted = [n.strip() for n in (names or "").split(",") if n.strip()]
    for r in rpcs():
        if not wanted or any(w in r.short for w in wanted):
            yield r
