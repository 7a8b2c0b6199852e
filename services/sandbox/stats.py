"""Counters behind ``GET /_sandbox/stats``.

Shape of :meth:`Stats.snapshot` (all counts are ints, times are Unix seconds as floats)::

    {
      "started_at": 1760000000.0,              # when the counters were last reset
      "endpoints": {
        "tavily.search": {
          "calls": 3, "in_flight": 0, "max_in_flight": 2, "cancelled": 1,
          "status": {"200": 2, "429": 1},      # HTTP statuses actually sent
          "faults": {"429": 1, "hang": 1}      # injected faults (header or random)
        }, ...
      },
      "cancellations": [                       # last 200 client disconnects, oldest first
        {"endpoint": "openai.chat_completions", "at": 1760000001.2,
         "started_at": 1760000000.9, "elapsed_s": 0.3, "phase": "hang"}
      ],
      "billing": {
        "tavily": {"searches": 3, "credits": 4},
        "openai": {"requests": 2, "prompt_tokens": 900, "completion_tokens": 120,
                   "web_search_calls": 1},
        "anthropic": {"requests": 1, "input_tokens": 0, "output_tokens": 0, "web_search_requests": 1},
        "perplexity": {"requests": 1, "prompt_tokens": 0, "completion_tokens": 0},
        "brightdata": {"records": 20, "error_records": 1}
      },
      "billing_unread": {                      # the part of "billing" whose answer never reached the client:
        "openai": {"requests": 1, ...}         # corrupted on purpose (malformed / truncated faults), or the
      },                                       # client had gone (timed out) before it was sent
      "brightdata": {
        "triggers": {"gd_m7aof0k82r803d5bjm": 1},   # trigger (and scrape) calls accepted, per dataset
        "inputs": {"gd_m7aof0k82r803d5bjm": 20},    # inputs submitted, per dataset
        "records_billed": {"gd_m7aof0k82r803d5bjm": 19},  # successful records delivered
        "error_records": {"gd_m7aof0k82r803d5bjm": 1},
        "rejected": {"gd_m7aof0k82r803d5bjm": 0},   # 429 over the running-snapshot cap
        "cancels": 0,
        "running": {"gd_m7aof0k82r803d5bjm": 0}     # snapshots not yet ready/failed right now
      }
    }
"""

from __future__ import annotations

import contextvars
import time
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

#: What the current provider request's route billed, ``[(provider, units), …]``, collected so that the fault
#: middleware can count it under ``billing_unread`` when the answer never reaches the client (None outside one).
REQUEST_BILLING: contextvars.ContextVar[list[tuple[str, dict[str, int]]] | None] = contextvars.ContextVar(
    "sandbox_request_billing", default=None
)


@dataclass
class EndpointStats:
    calls: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    cancelled: int = 0
    status: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "cancelled": self.cancelled,
            "status": dict(sorted(self.status.items())),
            "faults": dict(sorted(self.faults.items())),
        }


class Stats:
    """In-memory counters; single event loop, so no locking is needed."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.started_at = time.time()
        self.endpoints: dict[str, EndpointStats] = defaultdict(EndpointStats)
        self.cancellations: deque[dict[str, Any]] = deque(maxlen=200)
        self.billing: dict[str, Counter[str]] = defaultdict(Counter)
        self.billing_unread: dict[str, Counter[str]] = defaultdict(Counter)
        self.bd_triggers: Counter[str] = Counter()
        self.bd_inputs: Counter[str] = Counter()
        self.bd_records: Counter[str] = Counter()
        self.bd_error_records: Counter[str] = Counter()
        self.bd_rejected: Counter[str] = Counter()
        self.bd_cancels = 0

    # -- request lifecycle (called by the fault middleware) --------------------------------
    def begin(self, endpoint: str) -> EndpointStats:
        ep = self.endpoints[endpoint]
        ep.calls += 1
        ep.in_flight += 1
        ep.max_in_flight = max(ep.max_in_flight, ep.in_flight)
        return ep

    def end(self, endpoint: str, status: int | None) -> None:
        ep = self.endpoints[endpoint]
        ep.in_flight -= 1
        if status is not None:
            ep.status[str(status)] += 1

    def fault(self, endpoint: str, kind: str) -> None:
        self.endpoints[endpoint].faults[kind] += 1

    def cancelled(self, endpoint: str, started_at: float, phase: str) -> None:
        now = time.time()
        self.endpoints[endpoint].cancelled += 1
        self.cancellations.append(
            {
                "endpoint": endpoint,
                "at": now,
                "started_at": started_at,
                "elapsed_s": round(now - started_at, 4),
                "phase": phase,
            }
        )

    # -- billing ------------------------------------------------------------------------------
    def bill(self, provider: str, **units: int) -> None:
        self.billing[provider].update(units)
        pending = REQUEST_BILLING.get()
        if pending is not None:
            pending.append((provider, dict(units)))

    def unread(self, billed: list[tuple[str, dict[str, int]]]) -> None:
        """Count a request's billing under ``billing_unread`` too: billed, but the answer never reached the client
        (corrupted on purpose, or the client had gone away before it was sent)."""
        for provider, units in billed:
            self.billing_unread[provider].update(units)

    def snapshot(self, running: dict[str, int] | None = None) -> dict[str, Any]:
        return {
            "started_at": self.started_at,
            "endpoints": {k: v.as_dict() for k, v in sorted(self.endpoints.items())},
            "cancellations": list(self.cancellations),
            "billing": {k: dict(v) for k, v in sorted(self.billing.items())},
            "billing_unread": {k: dict(v) for k, v in sorted(self.billing_unread.items())},
            "brightdata": {
                "triggers": dict(self.bd_triggers),
                "inputs": dict(self.bd_inputs),
                "records_billed": dict(self.bd_records),
                "error_records": dict(self.bd_error_records),
                "rejected": dict(self.bd_rejected),
                "cancels": self.bd_cancels,
                "running": dict(running or {}),
            },
        }
