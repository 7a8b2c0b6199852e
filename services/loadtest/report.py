"""What a load test measured, and how it is printed.

The text layout follows ghz's summary (ghz www/docs/output.md; reference/performance.md §2): Count, Total, Slowest,
Fastest, Average, Requests/sec (count / total, failures included), the latency distribution, then
``Status code distribution`` (``[OK]  186 responses``) and ``Error distribution`` (``[8]  UNAVAILABLE: …``).
:meth:`Result.to_dict` is the ``--json`` form: one object, latencies in milliseconds, durations in seconds.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

#: Percentiles reported (ghz prints 10/25/50/75/90/95/99).
PERCENTILES = (10, 25, 50, 75, 90, 95, 99, 99.9)


def percentile(sorted_values: list[float] | array, p: float) -> float:
    """Nearest-rank percentile ``p`` (0..100) of already sorted values; NaN when empty."""
    n = len(sorted_values)
    if n == 0:
        return math.nan
    rank = max(1, math.ceil(p / 100.0 * n))
    return float(sorted_values[min(n, rank) - 1])


@dataclass
class Result:
    """Raw outcome of one load test. Latencies are in seconds (from the scheduled send time in open loop)."""

    mode: str  # "closed" | "open"
    method: str  # "/pkg.Service/Method"
    concurrency: int = 0  # closed loop: calls kept in flight
    rate: float = 0.0  # open loop: offered load, calls per second
    duration_s: float = 0.0  # wall time from the first send to the last answer (s)
    latencies_s: array = field(default_factory=lambda: array("d"))
    statuses: Counter[str] = field(default_factory=Counter)  # "OK" / "UNAVAILABLE" / … → count
    errors: Counter[str] = field(default_factory=Counter)  # "UNAVAILABLE: details" → count
    # Open loop only: sends not made because max_in_flight calls were outstanding, sends that started later than
    # ``late_threshold_s`` after their scheduled time (the generator itself fell behind), and the start lags.
    dropped: int = 0
    late_starts: int = 0
    late_threshold_s: float = 0.0
    start_lags_s: array = field(default_factory=lambda: array("d"))
    max_in_flight_seen: int = 0
    response_bytes: int = 0

    @property
    def count(self) -> int:
        """Calls that completed (any status)."""
        return len(self.latencies_s)

    @property
    def rps(self) -> float:
        """Completed calls per second of wall time (failures included, as ghz counts)."""
        return self.count / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def ok(self) -> int:
        return self.statuses.get("OK", 0)

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` object: counts, ``duration_s``, ``rps``, latencies in ms (``p50_ms`` … ``max_ms``)."""
        lat = sorted(self.latencies_s)
        ms = {f"p{_pname(p)}_ms": _r(percentile(lat, p) * 1000) for p in PERCENTILES}
        out: dict[str, Any] = {
            "mode": self.mode,
            "method": self.method,
            "count": self.count,
            "ok": self.ok,
            "duration_s": round(self.duration_s, 4),
            "rps": round(self.rps, 1),
            "concurrency": self.concurrency if self.mode == "closed" else None,
            "rate": self.rate if self.mode == "open" else None,
            "min_ms": _r(lat[0] * 1000) if lat else None,
            "mean_ms": _r(sum(lat) / len(lat) * 1000) if lat else None,
            **ms,
            "max_ms": _r(lat[-1] * 1000) if lat else None,
            "statuses": dict(self.statuses.most_common()),
            "errors": dict(self.errors.most_common()),
            "response_bytes": self.response_bytes,
        }
        if self.mode == "open":
            lags = sorted(self.start_lags_s)
            out.update(
                dropped=self.dropped,
                late_starts=self.late_starts,
                late_threshold_ms=_r(self.late_threshold_s * 1000),
                start_lag_p50_ms=_r(percentile(lags, 50) * 1000) if lags else None,
                start_lag_p99_ms=_r(percentile(lags, 99) * 1000) if lags else None,
                start_lag_max_ms=_r(lags[-1] * 1000) if lags else None,
                max_in_flight=self.max_in_flight_seen,
            )
        return out

    def to_text(self) -> str:
        """Human summary shaped like ghz's (ms latencies)."""
        d = self.to_dict()
        lines = ["", "Summary:"]
        load = (
            f"closed loop, {self.concurrency} in flight"
            if self.mode == "closed"
            else f"open loop, {self.rate:g} calls/s offered"
        )
        lines += [
            f"  Call:         {self.method}",
            f"  Load:         {load}",
            f"  Count:        {self.count}",
            f"  Total:        {self.duration_s:.2f} s",
        ]
        if self.count:
            lines += [
                f"  Slowest:      {d['max_ms']:.2f} ms",
                f"  Fastest:      {d['min_ms']:.2f} ms",
                f"  Average:      {d['mean_ms']:.2f} ms",
            ]
        lines.append(f"  Requests/sec: {self.rps:.2f}")
        if self.mode == "open":
            lines += [
                f"  Dropped:      {self.dropped} (in-flight cap reached)",
                f"  Late starts:  {self.late_starts} (> {self.late_threshold_s * 1000:g} ms behind schedule; "
                f"max {d['start_lag_max_ms'] or 0:.2f} ms)",
            ]
        if self.count:
            lines += ["", "Latency distribution" + (" (from scheduled send time):" if self.mode == "open" else ":")]
            for p in PERCENTILES:
                lines.append(f"  {p:g} % in {d[f'p{_pname(p)}_ms']:.2f} ms")
        lines += ["", "Status code distribution:"]
        width = max((len(k) for k in self.statuses), default=2) + 2
        for code, n in self.statuses.most_common():
            lines.append(f"  {'[' + code + ']':<{width}}  {n} responses")
        if self.errors:
            lines += ["", "Error distribution:"]
            for err, n in self.errors.most_common():
                lines.append(f"  [{n}]   {err}")
        return "\n".join(lines) + "\n"


def _pname(p: float) -> str:
    return f"{p:g}".replace(".", "")


def _r(v: float) -> float | None:
    return None if v is None or math.isnan(v) else round(v, 3)
