"""Bright Data "search by prompt" scrapers (ChatGPT and Perplexity) over the Datasets API v3 (providers.md §2).

One job = one *snapshot* of ≤ 20 prompts of the same model and location:

1. ``POST {base}/datasets/v3/trigger?dataset_id=…&include_errors=true`` with a bare JSON array of inputs
   ``{url, prompt, country, index}`` (+ ``web_search: true`` for ChatGPT) → ``{"snapshot_id": "s_…"}`` (§2.2, §2.3).
   A 429 ("too many running jobs for this dataset", §2.5) is retried with back-off (at least its Retry-After) and
   shrinks the adaptive in-flight cap (AIMD, :mod:`shared.resilience`). After a 5xx, a timeout, a broken connection
   or an unreadable answer — a trigger that failed half-way may still have created a paid snapshot — the dataset's
   snapshot list and the replicas' trigger intents say what happened (:meth:`BrightDataProvider._verified_trigger`,
   :mod:`services.inference.trigger_intents`): a snapshot no intent holds whose records carry exactly our prompts
   is ours → claimed and adopted; none → trigger again; undecidable → give up, saying why. Consecutive trigger failures open the dataset's circuit breaker: triggers then fail fast with
   ``UNAVAILABLE`` + RetryInfo.
2. ``GET /datasets/v3/progress/{id}`` until ``ready`` or ``failed``, every 7.5 % of the expected snapshot duration
   (/work/shared/reference/performance.md §3.2: a poll interval of 5–10 % of the typical job duration keeps the
   added latency ≤ 5 %, with no throughput loss when the slot counts provider-side jobs): the median of this
   dataset's recent snapshots (:class:`SnapshotDurations`), or — before any is known, and for a snapshot already
   older than that — the snapshot's own age (it has lasted at least that long), never under
   ``settings.brightdata_poll_seconds`` until durations are known and never over 30 s. With durations known the
   first poll waits for 80 % of the fastest recent one; every other status (``starting``, ``running``, ``collecting``, ``digesting``, …)
   means "pending" (§2.4). When progress itself fails transiently (429, 5xx, timeouts, garbage), the download
   endpoint is polled instead: its 202 / records / 400 say the same thing.
3. ``GET /datasets/v3/snapshot/{id}?format=json``; a 202 "not ready yet" is retried even after ``ready`` (§2.4).
4. Records are mapped back to inputs by ``index`` (we send 1-based positions), else by the echoed prompt, else by
   position when the count matches. Inputs without a record fail with "batch returned X records, expected Y".
   Error records (``error`` + ``error_code``, §2.5) become failed items, never answers.

Each record costs ``settings.brightdata_record_usd`` ($1.50 / 1K records, §2.8; error records are not billed).
``answer_text_markdown`` is kept as ``markdown``; ``citations`` and ``links_attached`` become citations;
``web_search_query`` becomes ``search_queries``.

At most ``settings.brightdata_max_in_flight`` snapshots per dataset are in flight from this process (Bright Data
allows 100 concurrent batch requests, §2.7; the cap counts provider-side jobs): a slot is taken before the trigger
and given back as soon as progress says the snapshot is ``ready`` or ``failed`` (or it is cancelled) — not after
its download, which is not a running job. Downloads (tens of MB each: 2–3 MB ``answer_html`` per ChatGPT record,
providers-2026-12.md) run under their own small per-dataset budget, :data:`MAX_DOWNLOADS` at a time.

Every call (trigger, progress, download, snapshot list, cancel, both datasets) goes through the token's
:class:`RateLimitBudget` (Bright Data blocks an IP at 25 HTTP 429s in 5 minutes: /work/shared/reference/
providers-2026-12.md): a 429 pauses every call (Retry-After, else 2, 4, 8… s) and the 429s of any window stay
≤ ``settings.brightdata_429_budget`` — across every replica sharing the token, through the inference service's
database (:mod:`services.inference.shared_budget`). Snapshot and
dataset ids are checked (:func:`validate_snapshot_id`) and percent-encoded as path segments (:func:`path_url`)
before they go into a URL. Triggers ask for ``custom_output_fields`` (``settings.brightdata_output_fields``) while
Bright Data accepts it there; downloads are parsed off the event loop and trimmed to the fields we use.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import statistics
import time
from collections import Counter as CounterOf
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import anyio
import httpx
import structlog
from prometheus_client import Counter, Gauge
from sqlalchemy.ext.asyncio import AsyncEngine

from services.inference import pricing
from services.inference.providers import (
    Capabilities,
    Citation,
    CompletionRequest,
    CompletionResult,
    ItemFailure,
    Outcome,
    error_from,
    failure_from,
    log_call,
    parse_retry_after,
)
from services.inference.providers.errors import map_status
from services.inference.shared_budget import SharedBudgetStore, SharedView, budget_key
from services.inference.trigger_intents import TriggerIntents
from shared.concurrency import background
from shared.config import InferenceSettings
from shared.errors import (
    Cancelled,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    RetryableError,
    Unavailable,
    VantageError,
)
from shared.grpc_client import Deadline
from shared.resilience import CIRCUIT_OPEN, ProviderGuard, Signal, classify

log = structlog.get_logger("vantage.inference.brightdata")

CHATGPT_DATASET_ID = "gd_m7aof0k82r803d5bjm"
PERPLEXITY_DATASET_ID = "gd_m7dhdot1vw9a7gc1n"
#: Longest prompt the scrapers accept (characters, §2.3).
MAX_PROMPT_CHARS = 4096
#: Longest wait between two progress polls (s).
MAX_POLL_INTERVAL = 30.0
#: Shortest wait between two progress polls once snapshot durations are learned (s).
MIN_POLL_INTERVAL = 0.02
#: Poll interval as a share of the expected snapshot duration (performance.md §3.2: 5–10 % keeps the added
#: latency ≤ 5 %; the mean added latency is half of it).
POLL_SHARE = 0.075
#: With durations known, the first poll of a snapshot waits this share of the fastest recent snapshot.
FIRST_POLL_SHARE = 0.8
#: Recent snapshot durations kept per dataset (the median of these is the expected duration).
DURATIONS_KEPT = 32
#: Snapshots of one dataset downloaded at once by this process (their own budget: a download does not hold one of
#: the ``brightdata_max_in_flight`` job slots, and tens of MB each must not pile up in memory).
MAX_DOWNLOADS = 4
#: HTTP timeout of one trigger / progress / download / cancel request (s).
REQUEST_TIMEOUT = 60.0
KEY_ENV = "BRIGHTDATA_API_TOKEN"
#: Seconds of clock difference tolerated between us and Bright Data when listing snapshots created "since" (s).
CLOCK_SKEW = 30.0
#: Seconds to let a trigger that timed out (or lost its connection) finish before checking what it created (s).
TRIGGER_SETTLE = 2.0
#: Snapshot ids as Bright Data issues them: ``s_`` + lowercase letters and digits (docs examples
#: ``s_m4x7enmven8djfqak``, ``s_mcd3rc6l2md984eoij``: docs.brightdata.com/api-reference/scrapers/management-apis/
#: monitor-progress, .../snapshot-data). Dataset ids: ``gd_`` + the same (``gd_m7aof0k82r803d5bjm``).
SNAPSHOT_ID_RE = re.compile(r"s_[a-z0-9]{1,64}")
DATASET_ID_RE = re.compile(r"gd_[a-z0-9]{1,64}")
#: Progress statuses of the v3 API (docs.brightdata.com/api-reference/scrapers/management-apis/monitor-progress).
PENDING_STATUSES = frozenset({"starting", "running"})
#: Page size of ``GET /datasets/v3/snapshots`` (docs: default 1,000, max 5,000) and the most pages read.
SNAPSHOT_PAGE = 1000
SNAPSHOT_PAGES = 5
#: Most unclaimed snapshots a failed trigger's check downloads to find its own; more → the outcome stays unknown.
MAX_CANDIDATES = 20
#: Downloads larger than this are parsed in a worker thread, off the event loop (bytes).
THREAD_PARSE_BYTES = 256 * 1024
#: Record fields kept after a download (the rest, e.g. 2–3 MB ``answer_html``, is dropped at once).
KEPT_FIELDS = frozenset({
    "url", "prompt", "answer_text", "answer_text_markdown", "citations", "links_attached", "web_search_triggered",
    "web_search_query", "model", "index", "input", "error", "error_code",
})
#: Our request field for a Bright Data input field named in a 400 ``validation_error`` (the rest keep their name).
FIELD_OF_INPUT = {"prompt": "messages", "country": "location", "web_search": "web_search"}

RATE_LIMITED_TOTAL = Counter(
    "brightdata_429_total", "HTTP 429 answers received from Bright Data, per token budget.", ["budget"]
)
RATE_LIMITED_WINDOW = Gauge(
    "brightdata_429_window", "Bright Data 429s received in the current sliding window, per token budget.", ["budget"]
)
SHARED_REPLICAS = Gauge(
    "brightdata_429_budget_replicas", "Inference replicas sharing the Bright Data 429 budget (as last read), per "
    "token budget.", ["budget"],
)
RATE_LIMIT_PAUSED = Gauge(
    "brightdata_429_paused_seconds", "Seconds until Bright Data calls resume after a 429, per token budget.",
    ["budget"],
)


def _shown(value: str) -> str:
    """A client-given value as it may appear in an error: escaped, at most 40 characters."""
    return repr(value[:40]) + ("…" if len(value) > 40 else "")


def validate_snapshot_id(value: str, field: str = "snapshot_id") -> str:
    """``value`` when it is a Bright Data snapshot id (:data:`SNAPSHOT_ID_RE`), else ``InvalidArgument`` naming
    ``field``. Checked before an id goes into a URL path (issue #11: ``../`` and control characters must never reach
    the provider)."""
    if not value:
        raise InvalidArgument(f"{field} is required", field=field, reason="INVALID_SNAPSHOT_ID")
    if not SNAPSHOT_ID_RE.fullmatch(value):
        raise InvalidArgument(
            f"{field} {_shown(value)} is not a Bright Data snapshot id (s_ then 1-64 lowercase letters or digits)",
            field=field, reason="INVALID_SNAPSHOT_ID")
    return value


def validate_dataset_id(value: str, field: str = "dataset_id") -> str:
    """``value`` when it is a Bright Data dataset id (:data:`DATASET_ID_RE`), else ``InvalidArgument``."""
    if not DATASET_ID_RE.fullmatch(value or ""):
        raise InvalidArgument(
            f"{field} {_shown(value or '')} is not a Bright Data dataset id (gd_ then lowercase letters or digits)",
            field=field, reason="INVALID_DATASET_ID")
    return value


class RateLimitBudget:
    """One 429 budget per Bright Data token: every call of every dataset (trigger, progress, download, list,
    cancel) passes :meth:`slot`.

    Bright Data blocks an IP that receives ≥ 25 HTTP 429s within 5 minutes, for every API call, until support
    unblocks it (/work/shared/reference/providers-2026-12.md, "Rate-limit policy"); ≥ 10 in 5 minutes is "close to
    the block"; after a 429 stop sending, wait Retry-After, else back off 2, 4, 8, 16, 32 s
    (docs.brightdata.com/products/scrapers/error-codes, "What happens if I get too many 429 errors?"). So:

    - a 429 pauses **every** call through this budget until ``now + Retry-After`` (else ``backoff·2^(n-1)``,
      ≤ ``backoff_max``, n = 429s in a row);
    - at most ``budget − (429s in the last window seconds)`` calls are in flight at once, so even if every one of
      them were answered 429 the sliding window would hold ≤ ``budget`` 429s (a call is sent only while
      ``in flight + 429s in window < budget``);
    - at ``warn_at`` 429s in the window a warning is logged; metrics ``brightdata_429_total``,
      ``brightdata_429_window`` and ``brightdata_429_paused_seconds`` (label ``budget``).

    One instance per token per process (the HTTP client of :func:`new_http_client` owns it). Replicas sharing a
    token share one window once :meth:`share` has given the budget the inference service's database
    (:mod:`services.inference.shared_budget`; ``server.build`` does it): each 429 is inserted there (one row), and
    every decision consults the window as every replica has recorded it (one indexed count, re-read at most every
    ``refresh_s`` seconds). Then a call is sent only when

    - no replica's 429 asks for a pause any more (the shared pause: "after a 429 stop sending", docs above);
    - ``in flight here + this replica's 429s in the window < budget // live replicas`` — this replica's share, so
      that even if every call in flight on every replica were answered 429 the window would hold ≤ ``budget``
      (exact while the replica count is current: a replica that joins is seen within ``refresh_s``, a killed one
      stops counting after ``member_ttl_s``; with more replicas than ``budget`` each still gets one call);
    - ``in flight here + every replica's 429s in the window < budget`` (the single-process rule on the shared
      count).

    Without the database (or while it cannot be read: logged) the budget decides on its own counts, as one process.
    """

    def __init__(
        self,
        name: str = "brightdata",
        *,
        budget: int = 10,
        warn_at: int = 5,
        window: float = 300.0,
        backoff: float = 2.0,
        backoff_max: float = 32.0,
        key: str = "no-token",
    ) -> None:
        self.name = name
        self.budget = max(1, budget)
        self.warn_at = warn_at
        self.window = window
        self.backoff = backoff
        self.backoff_max = backoff_max
        self._hits: deque[float] = deque()
        self._in_flight = 0
        self._paused_until = 0.0
        self._streak = 0
        self._changed: asyncio.Event | None = None
        self.received = 0  # 429s received in all
        self.key = key
        # Shared across replicas (share()): the store, the last view read and when (monotonic), and the two loops
        # of a shared budget (heartbeat, view refresher: one TaskGroup on _sharing, closed by unshare()).
        # Both periods follow the window, so a time-compressed test keeps the proportions of the real 5 minutes.
        self.refresh_s = min(0.5, window / 600.0)
        self.heartbeat_s = min(5.0, window / 60.0)
        self._store: SharedBudgetStore | None = None
        self._view: SharedView | None = None
        self._view_at = -float("inf")
        self._view_lock = asyncio.Lock()
        self._refresh_wanted = asyncio.Event()  # set by _shared_view when the view is stale; the refresher reads
        self._sharing: contextlib.AsyncExitStack | None = None
        self._store_failed = False

    @classmethod
    def from_settings(cls, settings: InferenceSettings, name: str = "brightdata") -> RateLimitBudget:
        return cls(name, budget=settings.brightdata_429_budget, warn_at=settings.brightdata_429_warn_at,
                   window=settings.brightdata_429_window_seconds, backoff=settings.brightdata_429_backoff_seconds,
                   backoff_max=settings.brightdata_429_backoff_max_seconds,
                   key=budget_key(settings.api_key("brightdata")))

    # --- sharing the window across replicas -----------------------------------------------------------------------

    @property
    def shared(self) -> bool:
        """True when the window is shared with the other replicas (:meth:`share` succeeded)."""
        return self._store is not None

    async def share(self, engine: AsyncEngine) -> bool:
        """Share this budget's window through the inference service's database ``engine`` (the inference chain at
        its head, i0003): register this replica (heartbeat every ``heartbeat_s``, purging rows older than two
        windows), read the window once. False (logged; the budget stays per process) when the database fails."""
        store = SharedBudgetStore(engine, self.key, member_ttl_s=3 * self.heartbeat_s)
        try:
            await store.heartbeat()
            view = await store.view(self.window)
        except Exception as e:
            log.error("brightdata_429_budget_not_shared", budget=self.name, error=type(e).__name__,
                      note="each replica keeps its own 429 window; set brightdata_429_budget to 10 // replicas")
            return False
        self._store, self._view, self._view_at = store, view, time.monotonic()
        stack = contextlib.AsyncExitStack()
        await stack.enter_async_context(background(self._heartbeat(store), self._refresher()))
        self._sharing = stack
        log.info("brightdata_429_budget_shared", budget=self.name, replicas=view.replicas, in_window=view.hits)
        return True

    async def unshare(self) -> None:
        """Stop the heartbeat and the refresher (cancelled and awaited) and leave the shared budget (the others'
        shares grow at their next read)."""
        store, self._store = self._store, None
        sharing, self._sharing = self._sharing, None
        if sharing is not None:
            await sharing.aclose()
        if store is not None:
            with contextlib.suppress(Exception):
                await store.leave()

    async def _heartbeat(self, store: SharedBudgetStore) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            try:
                await store.heartbeat()
                await store.purge(time.time() - 2 * self.window)
            except Exception as e:  # the next beat tries again; meanwhile the others may count one replica less
                log.warning("brightdata_429_budget_heartbeat_failed", budget=self.name, error=type(e).__name__)

    async def _refresher(self) -> None:
        """While shared: read the window each time :meth:`_shared_view` found it stale (requests made while a read
        is under way are served by that read)."""
        while True:
            await self._refresh_wanted.wait()
            await self.refresh_view()
            self._refresh_wanted.clear()

    def _shared_view(self) -> SharedView | None:
        """The shared window as last read (None when not shared). When it is older than ``refresh_s`` the refresher
        is asked for a read in the background — never awaited on a call's path, so a slow database delays what the
        replicas learn of each other, not the calls; its end wakes the waiters."""
        if self._store is None:
            return None
        if time.monotonic() - self._view_at >= self.refresh_s:
            self._refresh_wanted.set()
        return self._view

    async def refresh_view(self) -> SharedView | None:
        """Read the shared window now (one statement; concurrent callers share one read); the last view read when
        the database fails (logged once per outage), None when not shared."""
        async with self._view_lock:
            store = self._store
            if store is not None:
                try:
                    self._view = await store.view(self.window)
                    self._store_failed = False
                except Exception as e:
                    if not self._store_failed:
                        log.warning("brightdata_429_budget_unreadable", budget=self.name, error=type(e).__name__)
                    self._store_failed = True
                self._view_at = time.monotonic()
                if self._view is not None:
                    SHARED_REPLICAS.labels(self.name).set(self._view.replicas)
            self._wake()
        return self._view if self._store is not None else None

    async def publish(self, pause: float) -> None:
        """Insert the 429 just :meth:`record`-ed (pausing every replica for ``pause`` s) into the shared window;
        a no-op when not shared. Never raises (logged): the local window has it anyway."""
        if self._store is None:
            return
        now = time.time()
        try:
            await self._store.add_429(now, now + pause)
        except Exception as e:
            log.warning("brightdata_429_unshared", budget=self.name, error=type(e).__name__)
        self._view_at = -float("inf")  # the next decision reads the window again

    def in_window(self, now: float | None = None) -> int:
        """429s received in the last ``window`` seconds."""
        now = time.monotonic() if now is None else now
        while self._hits and self._hits[0] <= now - self.window:
            self._hits.popleft()
        RATE_LIMITED_WINDOW.labels(self.name).set(len(self._hits))
        return len(self._hits)

    def status(self) -> dict[str, float]:
        """``in_window`` (this replica's 429s), ``in_flight``, ``paused_s``, ``received``; when shared also
        ``shared_in_window`` (every replica's, as last read) and ``replicas``."""
        now = time.monotonic()
        out: dict[str, float] = {"in_window": self.in_window(now), "in_flight": self._in_flight,
                                 "paused_s": max(0.0, self._paused_until - now), "received": self.received}
        if self._view is not None and self._store is not None:
            out.update(shared_in_window=self._view.hits, replicas=self._view.replicas)
        return out

    def _wake(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def _wait_s(self, now: float, view: SharedView | None = None) -> float | None:
        """0 when a call may go now; else the most seconds to wait before looking again (the oldest 429 leaves the
        window then; a call that ends wakes the waiters sooner); None = no 429 in the window, wait for a call.
        With the shared ``view`` (the class docstring's three rules) the wait is at most ``refresh_s``, so that the
        other replicas' 429s and departures are seen."""
        if now < self._paused_until:
            return self._paused_until - now
        own = self.in_window(now)
        if view is None:
            if self._in_flight + own < self.budget:
                return 0.0
            return max(0.001, self._hits[0] + self.window - now) if self._hits else None
        wall = time.time()
        if view.paused_until > wall:
            return view.paused_until - wall
        share = max(1, self.budget // view.replicas)
        hits = max(own, view.hits)  # the view may not hold this replica's latest 429s yet
        RATE_LIMITED_WINDOW.labels(self.name).set(hits)
        if self._in_flight + own < share and self._in_flight + hits < self.budget:
            return 0.0
        waits = [self.refresh_s]
        if self._in_flight + own >= share and self._hits:
            waits.append(self._hits[0] + self.window - now)
        if self._in_flight + hits >= self.budget and view.oldest_at is not None:
            waits.append(view.oldest_at + self.window - wall)
        return max(0.001, min(waits))

    @contextlib.asynccontextmanager
    async def slot(self, deadline: Deadline | None = None) -> Any:
        """Wait for the right to send one call (raises ``DeadlineExceeded`` when ``deadline`` passes first), then
        hold it until the answer is in; the body must call :meth:`record` with the answer's status."""
        while True:
            view = self._shared_view()
            now = time.monotonic()
            wait = self._wait_s(now, view)
            if wait == 0.0:
                break
            if deadline is not None and deadline.expired:
                raise DeadlineExceeded(
                    f"the deadline passed while Bright Data calls were paused by the 429 budget "
                    f"({self.in_window(now)} 429s in the last {self.window:g} s)", provider=self.name)
            if self._changed is None:
                self._changed = asyncio.Event()
            timeout = wait if wait is not None else 1.0  # None: a call in flight must end first (it wakes us)
            if deadline is not None:
                timeout = min(timeout, deadline.remaining())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout)
        self._in_flight += 1
        try:
            yield self
        finally:
            self._in_flight -= 1
            self._wake()

    def record(self, status: int, retry_after: float | None) -> float:
        """Note one answer's HTTP status; for a 429, pause every call and return the pause (s), else 0."""
        if status != 429:
            self._streak = 0
            return 0.0
        now = time.monotonic()
        self.received += 1
        self._streak += 1
        self._hits.append(now)
        n = self.in_window(now)
        pause = retry_after if retry_after is not None else min(self.backoff * 2 ** (self._streak - 1),
                                                                 self.backoff_max)
        self._paused_until = max(self._paused_until, now + pause)
        RATE_LIMITED_TOTAL.labels(self.name).inc()
        RATE_LIMIT_PAUSED.labels(self.name).set(max(0.0, self._paused_until - now))
        if n >= self.warn_at:
            log.warning("brightdata_429_budget", budget=self.name, in_window=n, limit=self.budget,
                        window_s=self.window, paused_s=round(pause, 3),
                        note="Bright Data blocks an IP at 25 429s in 5 minutes")
        else:
            log.info("brightdata_429", budget=self.name, in_window=n, paused_s=round(pause, 3))
        self._wake()
        return pause


class SnapshotDurations:
    """Recent trigger-to-ready durations (s) of one dataset's snapshots, and the progress poll schedule they give
    (module docstring, step 2; /work/shared/reference/performance.md §3.2)."""

    def __init__(self, initial_s: float, kept: int = DURATIONS_KEPT) -> None:
        self.initial_s = initial_s  # settings.brightdata_poll_seconds: the interval while nothing is known
        self._recent: deque[float] = deque(maxlen=kept)

    def add(self, seconds: float) -> None:
        """Note one snapshot that was seen ``ready`` ``seconds`` after its trigger (≥ 0)."""
        if seconds >= 0:
            self._recent.append(seconds)

    @property
    def expected_s(self) -> float | None:
        """The median of the recent durations (s), None while none is known."""
        return statistics.median(self._recent) if self._recent else None

    def first_wait(self) -> float:
        """Seconds from the trigger to the first poll: 80 % of the fastest recent snapshot (a poll before that
        would only say "running"), else the first interval."""
        if not self._recent:
            return self.interval(0.0)
        return max(self.interval(0.0), FIRST_POLL_SHARE * min(self._recent))

    def interval(self, age_s: float) -> float:
        """Seconds to the next poll of a snapshot ``age_s`` seconds old: :data:`POLL_SHARE` of the larger of the
        expected duration and the snapshot's age, within [:data:`MIN_POLL_INTERVAL` (learned) or
        ``initial_s`` (nothing learned yet), :data:`MAX_POLL_INTERVAL`]."""
        expected = self.expected_s
        floor = self.initial_s if expected is None else MIN_POLL_INTERVAL
        return min(max(POLL_SHARE * max(age_s, expected or 0.0), floor), MAX_POLL_INTERVAL)


class BrightDataClient(httpx.AsyncClient):
    """The HTTP client of one Bright Data token, with its :class:`RateLimitBudget` (``budget``)."""

    budget: RateLimitBudget


class Dataset:
    """What differs between the two scrapers: dataset id, the page URL of an input, allowed input fields."""

    def __init__(self, provider: str, dataset_id: str, url: str, label: str, *, web_search_field: bool) -> None:
        self.provider = provider
        self.dataset_id = dataset_id
        self.url = url
        self.label = label
        self.web_search_field = web_search_field


CHATGPT = Dataset("brightdata_chatgpt", CHATGPT_DATASET_ID, "https://chatgpt.com/", "Bright Data ChatGPT",
                  web_search_field=True)
# The Perplexity dataset rejects web_search / additional_prompt (§2.3): Perplexity always searches.
PERPLEXITY = Dataset("brightdata_perplexity", PERPLEXITY_DATASET_ID, "https://www.perplexity.ai",
                     "Bright Data Perplexity", web_search_field=False)


def new_http_client(settings: InferenceSettings) -> BrightDataClient:
    """The one HTTP client both datasets share: ``{base}/datasets/v3/`` with the Bearer token (no token → no
    header; calls then fail with ``FailedPrecondition`` before any request), and the token's 429 budget
    (``client.budget``, :class:`RateLimitBudget`)."""
    key = settings.api_key("brightdata")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    client = BrightDataClient(
        base_url=settings.base_url("brightdata") + "/datasets/v3/",
        headers=headers,
        timeout=httpx.Timeout(min(REQUEST_TIMEOUT, settings.provider_timeout_seconds), connect=10.0),
        limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
    )
    client.budget = RateLimitBudget.from_settings(settings)
    return client


def path_url(http: httpx.AsyncClient, *segments: str) -> httpx.URL:
    """``{base_url}/seg1/seg2…`` with every segment percent-encoded as one path segment (RFC 3986 §3.3: ``/``,
    ``?``, ``#``, ``%`` and ``.``-only segments cannot change the path), built on httpx's URL."""
    def seg(s: str) -> str:
        enc = quote(s, safe="")
        return enc.replace(".", "%2E") if set(s) <= {"."} else enc

    base = http.base_url
    path = base.raw_path.split(b"?", 1)[0].decode("ascii").rstrip("/") + "/" + "/".join(seg(s) for s in segments)
    return base.copy_with(raw_path=path.encode("ascii"))


def prompt_of(req: CompletionRequest) -> str:
    """The prompt typed into the assistant: the single user message, else every message's text joined."""
    users = [m.content for m in req.messages if m.role == "user"]
    if len(users) == 1 and len(req.messages) == 1:
        return users[0]
    return "\n\n".join(m.content for m in req.messages if m.content)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def citations_of(rec: dict[str, Any]) -> list[Citation]:
    """``citations[] {url, title}`` then ``links_attached[] {url, text}``, de-duplicated by URL, in order."""
    seen: set[str] = set()
    out: list[Citation] = []
    for c in _as_list(rec.get("citations")) + _as_list(rec.get("links_attached")):
        if isinstance(c, str):
            url, title = c, ""
        elif isinstance(c, dict):
            url, title = str(c.get("url") or ""), str(c.get("title") or c.get("text") or "")
        else:
            continue
        if url and url not in seen:
            seen.add(url)
            out.append(Citation(url, title))
    return out


def _echo(rec: dict[str, Any]) -> dict[str, Any]:
    """The input a record echoes back (``input``), or {}."""
    echo = rec.get("input")
    return echo if isinstance(echo, dict) else {}


def match_records(records: Sequence[Any], prompts: Sequence[str]) -> list[dict[str, Any] | None]:
    """One record (or None) per input position.

    By ``index`` (1-based, as we send it; also read from the echoed ``input``), else by the echoed prompt, else —
    only when the counts agree, so that nothing can shift — by order among the unmatched ones.
    """
    n = len(prompts)
    slots: list[dict[str, Any] | None] = [None] * n
    rest: list[dict[str, Any]] = []
    for rec in records:
        if not isinstance(rec, dict):
            continue
        echo = _echo(rec)
        idx = rec.get("index")
        if idx is None:  # ChatGPT records may carry "index": null (§2.6); the echoed input still has ours
            idx = echo.get("index")
        if isinstance(idx, int) and not isinstance(idx, bool) and 1 <= idx <= n and slots[idx - 1] is None:
            slots[idx - 1] = rec
        else:
            rest.append(rec)
    unplaced: list[dict[str, Any]] = []
    for rec in rest:
        prompt = _echo(rec).get("prompt", rec.get("prompt"))
        pos = next((i for i, p in enumerate(prompts) if slots[i] is None and p == prompt), None)
        if pos is None:
            unplaced.append(rec)
        else:
            slots[pos] = rec
    if unplaced and len(records) == n:
        empty = [i for i, s in enumerate(slots) if s is None]
        for i, rec in zip(empty, unplaced, strict=False):
            slots[i] = rec
    return slots


class BrightDataProvider:
    """:class:`~services.inference.providers.BatchProvider` for one dataset.

    ``http`` is the process-wide client (:func:`new_http_client`); ``in_flight`` the per-dataset cap of snapshots
    in flight (``settings.brightdata_max_in_flight``).
    """

    def __init__(
        self,
        settings: InferenceSettings,
        dataset: Dataset,
        http: httpx.AsyncClient,
        in_flight: anyio.CapacityLimiter,
        *,
        has_key: bool,
    ) -> None:
        self._settings = settings
        self.dataset = dataset
        self.name = dataset.provider
        self.capabilities = Capabilities(
            supports_batching=True,
            max_batch_size=max(1, min(20, settings.brightdata_max_batch)),
            supports_web_search=True,
            supports_locations=True,
        )
        self._http = http
        budget = getattr(http, "budget", None)
        self.budget: RateLimitBudget = budget if isinstance(budget, RateLimitBudget) else \
            RateLimitBudget.from_settings(settings)
        self.in_flight = in_flight
        # custom_output_fields on /trigger: whether Bright Data accepts it there is not documented (it is on
        # /scrape); sent until a trigger is refused naming the field, then not any more (this process).
        self._output_fields = settings.brightdata_output_fields.strip()
        # Adaptive in-flight cap (AIMD on trigger 429s "too many running jobs", never above the configured cap) and
        # a circuit breaker on triggers; retries stay 429-only (see submit_batch).
        self.guard = ProviderGuard.from_settings(
            settings, self.name, concurrency=int(in_flight.total_tokens), label=dataset.label, capacity=in_flight
        )
        self._has_key = has_key
        self._triggered: dict[str, None] = {}  # snapshot ids this process triggered, oldest first
        self._adopted: dict[str, None] = {}  # snapshots adopted after an unreadable trigger answer (verified later)
        self._foreign: dict[str, None] = {}  # snapshots whose records were checked and are not this process's
        # Trigger intents: in memory until the service hands over the shared table (server.build: the database of
        # the response cache), so that every replica sees every other's triggers.
        self.intents = TriggerIntents()
        self._triggering = 0  # triggers of this process awaiting their answer
        self._no_triggers = asyncio.Event()
        self._no_triggers.set()
        # snapshot id → the token it holds in ``in_flight`` (taken at trigger, given back once ready or at cancel).
        self._tickets: dict[str, object] = {}
        # snapshot id → monotonic time of its trigger's answer (for the durations; bounded like the tickets).
        self._submitted_at: dict[str, float] = {}
        self.durations = SnapshotDurations(settings.brightdata_poll_seconds)
        self.downloads = anyio.CapacityLimiter(MAX_DOWNLOADS)

    @property
    def available(self) -> bool:
        return self._has_key

    async def aclose(self) -> None:
        """The HTTP client is shared and closed by ``build``."""

    # --- HTTP ---------------------------------------------------------------------------------------------------

    def _require_key(self) -> None:
        if not self._has_key:
            raise FailedPrecondition(f"{KEY_ENV} is not set", provider=self.name, reason="NO_API_KEY")

    async def _send(
        self,
        method: str,
        segments: tuple[str, ...],
        *,
        deadline: Deadline | None = None,
        on_429: Any = None,
        **kw: Any,
    ) -> httpx.Response:
        """One Bright Data call to ``{base}/datasets/v3/<segments…>`` (each segment percent-encoded), through the
        token's :class:`RateLimitBudget`: it waits while calls are paused or the 429 budget is spoken for, and a 429
        answer pauses every call and is sent again (≤ ``settings.brightdata_429_retries`` times, within
        ``deadline``; a 429 means nothing was done, docs products/scrapers/error-codes). Returns the last answer
        (a 429 when the re-sends ran out); ``Unavailable`` on timeouts and broken connections, ``DeadlineExceeded``
        when ``deadline`` passed while paused. ``on_429`` is called once per 429."""
        url = path_url(self._http, *segments)
        retries = max(0, self._settings.brightdata_429_retries)
        for attempt in range(retries + 1):
            async with self.budget.slot(deadline):
                timeout = min(REQUEST_TIMEOUT, self._settings.provider_timeout_seconds)  # a hung request is cut
                if deadline is not None:
                    timeout = min(timeout, deadline.remaining())
                try:
                    resp = await self._http.request(method, url, timeout=timeout, **kw)
                except httpx.TimeoutException:
                    raise Unavailable(f"{self.dataset.label} did not answer in time", provider=self.name,
                                      reason="PROVIDER_TIMEOUT") from None
                except httpx.TransportError as e:
                    raise Unavailable(f"cannot reach {self.dataset.label}: {type(e).__name__}", provider=self.name,
                                      reason="PROVIDER_CONNECTION") from None
                pause = self.budget.record(resp.status_code, parse_retry_after(resp.headers))
                if resp.status_code == 429:  # every replica sharing the token counts it (and pauses)
                    await self.budget.publish(pause)
            if resp.status_code != 429:
                return resp
            if on_429 is not None:
                on_429()
            if attempt >= retries or (deadline is not None and deadline.expired):
                break
            log.info("brightdata_429_resend", provider=self.name, endpoint=segments[0], attempt=attempt + 1)
        return resp

    def _error(self, resp: httpx.Response, what: str) -> VantageError:
        """Our error for a non-2xx answer (:func:`error_of`)."""
        return error_of(resp, what, provider=self.name, label=self.dataset.label)

    # --- the batch lifecycle ------------------------------------------------------------------------------------

    def _input(self, req: CompletionRequest, index: int) -> dict[str, Any]:
        item: dict[str, Any] = {"url": self.dataset.url, "prompt": prompt_of(req), "index": index}
        if req.location:
            item["country"] = req.location.lower()  # as the docs' examples send it ("us"; providers-2026-12.md)
        if self.dataset.web_search_field:
            # A permission, not an order (§2.3): ChatGPT decides whether to search. Always granted so that
            # scraped answers look like what a signed-in user sees (the API's own default is true too).
            item["web_search"] = True
        return item

    def check(self, req: CompletionRequest) -> None:
        """Refuse what a scraper cannot do: a JSON schema, a prompt over 4,096 characters."""
        if req.json_schema is not None:
            raise InvalidArgument(f"{self.dataset.label} answers free text only; drop json_schema",
                                  field="json_schema", provider=self.name, reason="UNSUPPORTED")
        if len(prompt_of(req)) > MAX_PROMPT_CHARS:
            raise InvalidArgument(f"the prompt is longer than {MAX_PROMPT_CHARS} characters", field="messages",
                                  provider=self.name, reason="CONTEXT_TOO_LONG")

    async def submit_batch(self, reqs: Sequence[CompletionRequest], *, deadline: Deadline | None = None) -> str:
        """Trigger one snapshot for ``reqs`` (≤ max batch size, one model and location); its snapshot id.

        Waits for a free in-flight slot of this dataset first. Raises ``InvalidArgument`` (bad inputs),
        ``ResourceExhausted`` (still 429 after the retries), ``Unavailable``, ``FailedPrecondition``,
        ``DeadlineExceeded``. Without a ``deadline`` the waits (slot, 429-budget pauses, retries) are bounded by
        ``settings.brightdata_timeout_seconds``: a 429 storm may pause every Bright Data call for minutes.
        """
        self._require_key()
        if not reqs or len(reqs) > self.capabilities.max_batch_size:
            raise InvalidArgument(f"a batch holds 1..{self.capabilities.max_batch_size} prompts, not {len(reqs)}",
                                  field="items", provider=self.name)
        for r in reqs:
            self.check(r)
        deadline = deadline or Deadline(self._settings.brightdata_timeout_seconds)
        inputs = [self._input(r, i) for i, r in enumerate(reqs, 1)]
        ticket = object()
        try:
            with anyio.fail_after(deadline.remaining()):
                await self.in_flight.acquire_on_behalf_of(ticket)
        except TimeoutError:
            raise DeadlineExceeded(
                f"the deadline passed while waiting for one of {self.in_flight.total_tokens:g} in-flight "
                f"{self.dataset.label} snapshots to finish", provider=self.name) from None
        try:
            snapshot_id = await self._verified_trigger(inputs, deadline)
        except BaseException:
            self.in_flight.release_on_behalf_of(ticket)
            raise
        self._tickets[snapshot_id] = ticket
        self._submitted_at[snapshot_id] = time.monotonic()
        while len(self._submitted_at) > 100_000:  # collected ones are popped; this bounds the never-collected
            self._submitted_at.pop(next(iter(self._submitted_at)))
        return snapshot_id

    async def _verified_trigger(self, inputs: list[dict[str, Any]], deadline: Deadline) -> str:
        """Trigger once, and after a failure (5xx, timeout, broken connection, an unreadable answer) find out from
        Bright Data what that trigger did before anything else is paid for — Bright Data has no idempotency key.

        Every trigger is first recorded as an intent (:mod:`services.inference.trigger_intents`: dataset, prompts
        hash, time; the shared table, so every replica sees it) and, once answered, gets its snapshot id there.
        After a failure (:meth:`_own_snapshot`) the dataset's snapshots created since the trigger began (minus
        :data:`CLOCK_SKEW`) are listed, those this process or any intent holds are dropped, and each remaining one
        is downloaded once ready: the snapshot whose records carry exactly our prompts is ours — claimed for this
        intent (UNIQUE, so no two replicas adopt one snapshot) and adopted instead of paying again. Never "the
        single unknown snapshot": another replica's or client's snapshot is recognised by its prompts.

        - none is ours: the trigger created nothing — trigger again (:meth:`_before_retry`);
        - the list or the intents cannot be read, more than :data:`MAX_CANDIDATES` candidates, or a candidate
          that fails or is not ready in time: ambiguous — not repeated, the error says why.

        After a timeout or a broken connection the check waits :data:`TRIGGER_SETTLE` seconds first, so that a slow
        trigger still being processed has time to show up. A 429 still answered after :meth:`_send`'s re-sends
        ("too many running jobs": nothing was created) is triggered again the same way (:meth:`_before_retry`). This
        loop is the trigger's one retry layer: ``settings.provider_max_attempts`` triggers in all, whatever failed.
        """
        attempts = max(1, self._settings.provider_max_attempts)
        prompts = [str(i.get("prompt", "")) for i in inputs]
        n = 0
        while True:
            n += 1
            began = time.time()
            intent = await self._record_intent(prompts, began)
            try:
                snapshot_id = await self._guarded_trigger(inputs, deadline)
            except Unavailable as e:
                if e.reason == CIRCUIT_OPEN:
                    await self._resolve_intent(intent, "none")  # refused before anything was sent
                    raise
                settle = TRIGGER_SETTLE if e.reason in ("PROVIDER_TIMEOUT", "PROVIDER_CONNECTION") else 0.0
                if settle >= deadline.remaining(0.0):
                    await self._resolve_intent(intent, "unknown")
                    raise
                await asyncio.sleep(settle)
                found, why = await self._own_snapshot(intent, prompts, began - CLOCK_SKEW, deadline)
                if found:
                    self._adopted[found] = None
                    self._remember(found)
                    log.warning("brightdata_trigger_adopted", provider=self.name, snapshot_id=found, reason=e.reason,
                                error=e.message, verified="records carry our prompts")
                    return found
                if why:
                    await self._resolve_intent(intent, "unknown")
                    raise Unavailable(f"{e.message}; the trigger was not repeated: {why}", provider=self.name,
                                      reason=e.reason, retry_after=e.retry_after, metadata=e.metadata) from None
                await self._resolve_intent(intent, "none")
                await self._before_retry(n, attempts, e, deadline, "no snapshot created")
            except ResourceExhausted as e:
                await self._resolve_intent(intent, "none")  # 429: "too many running jobs", nothing was created
                await self._before_retry(n, attempts, e, deadline, "429: nothing created")
            except BaseException:
                await self._resolve_intent(intent, "unknown")
                raise
            else:
                await self._resolve_intent(intent, "triggered", snapshot_id)
                return snapshot_id

    async def _before_retry(self, n: int, attempts: int, e: RetryableError, deadline: Deadline, verified: str
                            ) -> None:
        """Wait before trigger ``n + 1`` after trigger ``n`` failed with ``e`` having created nothing (``verified``
        says how that is known, for the log) — the guard's retry policy (:class:`shared.resilience.RetryPolicy`:
        full-jitter back-off, at least the Retry-After) — or raise ``e`` when no trigger may follow: ``attempts``
        spent, a Retry-After over the policy's ``max_retry_after``, or a wait that would outlast ``deadline``.
        Counted in the guard's ``retries``."""
        policy = self.guard.retry
        if n >= attempts or (e.retry_after is not None and e.retry_after > policy.max_retry_after):
            raise e
        wait = policy.backoff(n, e.retry_after)
        if wait >= deadline.remaining(0.0):
            raise e
        self.guard.retries += 1
        log.info("brightdata_trigger_retry", provider=self.name, attempt=n, reason=e.reason, verified=verified,
                 wait_s=round(wait, 3))
        await asyncio.sleep(wait)

    async def _record_intent(self, prompts: list[str], began: float) -> str | None:
        """A pending intent for this trigger; None (logged) when the store cannot take it — the trigger goes ahead,
        and a failure of it is then checked by the records alone."""
        try:
            return await self.intents.record(self.dataset.dataset_id, prompts, began)
        except Exception as e:  # the intents make the check cheaper and exclusive; the records keep it correct
            log.warning("brightdata_intent_unrecorded", provider=self.name, error=type(e).__name__)
            return None

    async def _resolve_intent(self, intent: str | None, state: str, snapshot_id: str | None = None) -> None:
        if intent is None:
            return
        try:
            await self.intents.resolve(intent, state, snapshot_id)
        except Exception as e:
            log.warning("brightdata_intent_unresolved", provider=self.name, state=state, error=type(e).__name__)

    async def _own_snapshot(
        self, intent: str | None, prompts: list[str], since: float, deadline: Deadline
    ) -> tuple[str | None, str]:
        """``(snapshot_id, "")`` when a snapshot created since ``since`` that no intent holds carries exactly
        ``prompts`` (claimed for ``intent``); ``(None, "")`` when none does (verified: nothing of ours was created);
        ``(None, why)`` when that cannot be established."""
        listed = await self._snapshots_since(since, deadline)
        if listed is None:
            return None, "the snapshot list could not be read"
        try:
            held = await self.intents.held(listed)
        except Exception:
            return None, "the trigger intents could not be read"
        candidates = [sid for sid in listed if sid not in held and sid not in self._foreign]
        if len(candidates) > MAX_CANDIDATES:
            return None, f"{len(candidates)} snapshots of unknown origin appeared meanwhile ({', '.join(candidates[:3])})"
        undecided: list[str] = []
        for sid in candidates:
            try:
                if await self.intents.held([sid]):  # another replica's trigger was answered meanwhile
                    continue
                give_up = Deadline(min(deadline.remaining(), self._settings.brightdata_timeout_seconds))
                err = await self._wait_ready(sid, give_up, deadline)
                records = [] if err is not None else await self._download(sid, give_up, deadline)
            except Exception:  # not ready in time, unreadable: neither ours nor not ours
                undecided.append(sid)
                continue
            if err is not None:
                undecided.append(sid)  # a failed snapshot has no records to tell whose it was
                continue
            if not _carries_exactly(records, prompts):
                self._foreign[sid] = None
                continue
            claimed = True
            if intent is not None:
                try:
                    claimed = await self.intents.claim(intent, sid)
                except Exception:
                    return None, "the trigger intents could not be written"
            if claimed:
                return sid, ""
        if undecided:
            return None, f"{len(undecided)} snapshots of unknown origin could not be checked ({', '.join(undecided[:3])})"
        return None, ""

    def _remember(self, snapshot_id: str) -> None:
        """Note a snapshot as ours (bounded memory, oldest forgotten first)."""
        self._triggered[snapshot_id] = None
        while len(self._triggered) > 10_000:
            self._triggered.pop(next(iter(self._triggered)))
        while len(self._foreign) > 10_000:
            self._foreign.pop(next(iter(self._foreign)))
        while len(self._adopted) > 1_000:
            self._adopted.pop(next(iter(self._adopted)))

    async def _snapshots_since(self, since: float, deadline: Deadline | None = None) -> list[str] | None:
        """Ids of this dataset's snapshots created at or after ``since`` (Unix s) that this process did not trigger;
        None when the list cannot be read. Waits (≤ 5 s) for this process's other triggers in flight first, so that
        their snapshots are known.

        ``GET /datasets/v3/snapshots?dataset_id=…&from_date=…&skip=…&limit=…``
        (docs.brightdata.com/api-reference/scrapers/management-apis/get-snapshots: ``limit`` default 1,000, max
        5,000; ``from_date`` "created after a specific date"; the sort order is not documented): ``from_date`` is
        ``since`` as ISO 8601 UTC, so the new snapshot is in the answer however busy the account; pages of
        :data:`SNAPSHOT_PAGE` are read until a short page (≤ :data:`SNAPSHOT_PAGES` pages; more → None, ambiguous).
        """
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._no_triggers.wait(), 5.0)
        deadline = deadline or Deadline(min(REQUEST_TIMEOUT, self._settings.provider_timeout_seconds))
        from_date = datetime.fromtimestamp(since, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(since * 1000) % 1000:03d}Z"
        out: list[str] = []
        for page in range(SNAPSHOT_PAGES):
            params = {"dataset_id": self.dataset.dataset_id, "from_date": from_date,
                      "skip": str(page * SNAPSHOT_PAGE), "limit": str(SNAPSHOT_PAGE)}
            try:
                resp = await self._send("GET", ("snapshots",), params=params, deadline=deadline)
                if resp.status_code != 200:
                    return None
                body = resp.json()
            except (RetryableError, DeadlineExceeded, ValueError):
                return None
            if not isinstance(body, list):
                return None
            for snap in body:
                if not isinstance(snap, dict):
                    continue
                sid = str(snap.get("id") or snap.get("snapshot_id") or "")
                created = _unix(snap.get("created"))
                if sid and sid not in self._triggered and (created is None or created >= since):
                    out.append(sid)
            if len(body) < SNAPSHOT_PAGE:
                return out
        return None

    async def _guarded_trigger(self, inputs: list[dict[str, Any]], deadline: Deadline) -> str:
        """One trigger under the circuit breaker (a dead Bright Data fails fast with ``UNAVAILABLE`` +
        ``RetryInfo``), its outcome fed to the adaptive in-flight cap (a 429 shrinks it by AIMD)."""
        probe = self.guard.breaker.check()
        sig = Signal.IGNORE
        self._triggering += 1
        self._no_triggers.clear()
        try:
            snapshot_id = await self._trigger(inputs, deadline)
            self._remember(snapshot_id)  # for the idempotency check of a failed trigger
            sig = Signal.SUCCESS
            return snapshot_id
        except BaseException as e:
            sig = Signal.IGNORE if isinstance(e, asyncio.CancelledError) else classify(e, deadline)
            raise
        finally:
            self._triggering -= 1
            if not self._triggering:
                self._no_triggers.set()
            self.guard.breaker.record(sig, probe=probe)
            self.guard.limiter.on_sample(int(self.in_flight.borrowed_tokens), sig)

    async def _trigger(self, inputs: list[dict[str, Any]], deadline: Deadline) -> str:
        """``POST /datasets/v3/trigger?dataset_id=…&include_errors=true[&custom_output_fields=a|b|…]``; a 429 is
        sent again by :meth:`_send` (each one shrinks the adaptive in-flight cap). A trigger refused with a
        ``validation_error`` naming ``custom_output_fields`` is sent again without it, and it is not sent any more."""
        started = time.perf_counter()
        params = {"dataset_id": validate_dataset_id(self.dataset.dataset_id), "include_errors": "true"}

        def overloaded() -> None:  # "too many running jobs": fewer snapshots in flight (AIMD)
            self.guard.limiter.on_sample(int(self.in_flight.borrowed_tokens), Signal.OVERLOAD)

        while True:
            if self._output_fields:
                params["custom_output_fields"] = self._output_fields
            resp = await self._send("POST", ("trigger",), params=params, json=inputs, deadline=deadline,
                                    on_429=overloaded)
            if resp.status_code == 200:
                break
            err = self._error(resp, "trigger")
            if (self._output_fields and isinstance(err, InvalidArgument)
                    and any("custom_output_fields" in f for f, _ in err.violations)):
                log.info("brightdata_custom_output_fields_refused", provider=self.name, error=err.message)
                self._output_fields = ""
                params.pop("custom_output_fields", None)
                continue
            log_call(self.name, self.name, started, error=err, inputs=len(inputs))
            raise err
        try:
            snapshot_id = str(resp.json()["snapshot_id"])
        except (ValueError, KeyError, TypeError):
            raise Unavailable(f"{self.dataset.label} trigger answered without a snapshot_id", provider=self.name,
                              reason="malformed_response") from None
        log.info("brightdata_triggered", provider=self.name, snapshot_id=snapshot_id, inputs=len(inputs),
                 ms=round((time.perf_counter() - started) * 1000, 1))
        return snapshot_id

    async def collect_batch(
        self,
        job_id: str,
        count: int,
        *,
        prompts: Sequence[str] | None = None,
        model: str = "",
        deadline: Deadline | None = None,
    ) -> list[Outcome]:
        """Wait for snapshot ``job_id`` of ``count`` inputs and return one outcome per input, in order.

        Never raises for provider trouble: a failed or missing snapshot, error records, missing records, a rejected
        token and running out of time all become :class:`ItemFailure` values. ``prompts`` (optional) helps match
        records that lack an ``index``. A snapshot that is not ready after ``settings.brightdata_timeout_seconds``
        is cancelled; one that outlives the caller's ``deadline`` is left running, so it can be resumed.
        """
        try:
            validate_snapshot_id(job_id)
        except InvalidArgument as e:
            self._tickets.pop(job_id, None)
            return [failure_from(e, provider=self.name)] * count
        ticket: object | None = self._tickets.pop(job_id, None)
        if ticket is None:  # a resumed snapshot: it is in flight at Bright Data, so it takes a slot while polled
            ticket = object()
            await self.in_flight.acquire_on_behalf_of(ticket)
        held = [ticket]

        def release() -> None:  # once: when the snapshot is no longer a running job (ready, failed, cancelled)
            if held:
                self.in_flight.release_on_behalf_of(held.pop())

        started = time.perf_counter()
        try:
            outcomes = await self._collect(job_id, count, list(prompts or [""] * count), model or self.name, deadline,
                                           release)
        finally:
            release()
            self._submitted_at.pop(job_id, None)
        ok = [o for o in outcomes if isinstance(o, CompletionResult)]
        log.info(
            "provider_call",
            provider=self.name,
            model=model or self.name,
            snapshot_id=job_id,
            records=len(ok),
            failed=len(outcomes) - len(ok),
            cost_usd=sum(o.cost_usd for o in ok),
            ms=round((time.perf_counter() - started) * 1000, 1),
            outcome="ok" if ok else "failed",
        )
        return outcomes

    async def _collect(
        self, job_id: str, count: int, prompts: list[str], model: str, deadline: Deadline | None,
        release: Any = None,
    ) -> list[Outcome]:
        """Poll, then download; ``release()`` is called once the snapshot is no longer running at Bright Data
        (progress said ``ready`` or ``failed``), so that its in-flight slot serves the next trigger while this one
        downloads. When progress could not be read, the download itself is the poll and the slot is kept."""
        give_up = Deadline(self._settings.brightdata_timeout_seconds)

        def fail_all(err: VantageError) -> list[Outcome]:
            return [failure_from(err, provider=self.name)] * count

        try:
            self._require_key()
            status, confirmed = await self._poll_progress(job_id, give_up, deadline, self._submitted_at.get(job_id))
            if confirmed and release is not None:
                release()
            if status is not None:
                if status.metadata.get("provider_error_code") == "unknown_status":  # given up on: not left running
                    await self._cancel_quietly(job_id)
                return fail_all(status)
            async with self.downloads:
                records = await self._download(job_id, give_up, deadline)
        except _GaveUp:
            await self._cancel_quietly(job_id)
            return fail_all(DeadlineExceeded(
                f"snapshot {job_id} was not ready after {self._settings.brightdata_timeout_seconds:g} s; cancelled",
                provider=self.name, metadata={"provider_error_code": "timeout"}))
        except VantageError as e:
            return fail_all(e)
        return self._outcomes(job_id, records, count, prompts, model)


    async def _pause(self, seconds: float, give_up: Deadline, deadline: Deadline | None) -> None:
        """Sleep between polls, but never past either deadline."""
        limit = min(give_up.remaining(0.0), deadline.remaining(0.0) if deadline else float("inf"))
        if deadline is not None and deadline.expired:
            raise DeadlineExceeded("the deadline passed while waiting for the snapshot", provider=self.name)
        if give_up.expired:
            raise _GaveUp
        await asyncio.sleep(max(0.0, min(seconds, limit)))

    async def _wait_ready(self, job_id: str, give_up: Deadline, deadline: Deadline | None) -> VantageError | None:
        """Poll progress until ``ready`` (None) or ``failed`` (the error to record on every item)."""
        status, _ = await self._poll_progress(job_id, give_up, deadline, self._submitted_at.get(job_id))
        return status

    async def _poll_progress(
        self, job_id: str, give_up: Deadline, deadline: Deadline | None, submitted_at: float | None = None
    ) -> tuple[VantageError | None, bool]:
        """Poll progress until ``ready`` (``(None, True)``) or ``failed`` (``(error, True)``, the error to record
        on every item); ``(None, False)`` when progress could not be read (the download endpoint tells then).

        Documented statuses: ``starting``, ``running`` (pending), ``ready``, ``failed`` (with ``error_message``)
        (docs.brightdata.com/api-reference/scrapers/management-apis/monitor-progress). Any other status (what
        progress reports after a cancel is not documented) is polled on for at most
        ``settings.brightdata_unknown_status_seconds``, then the snapshot fails with an error naming the status.
        Polls follow :class:`SnapshotDurations` (module docstring, step 2) from ``submitted_at`` (monotonic s of the
        trigger; None = a snapshot triggered elsewhere: its age counts from now); a snapshot triggered here and seen
        ``ready`` adds its duration.
        """
        began = time.monotonic() if submitted_at is None else submitted_at
        # A snapshot triggered elsewhere (a resume) may be ready already: polled at once.
        first = 0.0 if submitted_at is None else self.durations.first_wait() - (time.monotonic() - began)
        if first > 0:
            await self._pause(first, give_up, deadline)
        unknown_since: float | None = None
        while True:
            try:
                resp = await self._send("GET", ("progress", job_id), deadline=deadline)
                if resp.status_code != 200:
                    raise self._error(resp, f"snapshot {job_id}")
                body = resp.json()
            except (RetryableError, ValueError) as e:
                # Progress is down or garbled: the download endpoint can tell "not ready" (202) from ready
                # (records) and failed (400) on its own, so wait there instead.
                log.info("brightdata_progress_unavailable", provider=self.name, snapshot_id=job_id,
                         error=getattr(e, "message", type(e).__name__))
                return None, False
            status = str(body.get("status", "")).lower() if isinstance(body, dict) else ""
            if status == "ready":
                if submitted_at is not None:
                    self.durations.add(time.monotonic() - submitted_at)
                log.debug("brightdata_ready", provider=self.name, snapshot_id=job_id,
                          age_s=round(time.monotonic() - began, 3), expected_s=self.durations.expected_s)
                return None, True
            if status == "failed":
                message = str(body.get("error_message") or "failed")
                if "cancel" in message.lower():
                    return Cancelled(f"snapshot {job_id} was cancelled: {message}", provider=self.name,
                                     metadata={"provider_error_code": "cancelled"}), True
                return Unavailable(f"snapshot {job_id} failed: {message}", provider=self.name,
                                   metadata={"provider_error_code": "snapshot_failed"}), True
            if status not in PENDING_STATUSES:
                now = time.monotonic()
                unknown_since = now if unknown_since is None else unknown_since
                bound = self._settings.brightdata_unknown_status_seconds
                if now - unknown_since >= bound:
                    log.warning("brightdata_unknown_status", provider=self.name, snapshot_id=job_id,
                                status=status[:40])
                    return Unavailable(
                        f"snapshot {job_id} reported the undocumented progress status {_shown(status)} for "
                        f"{bound:g} s (documented: starting, running, ready, failed); gave up and cancelled it",
                        provider=self.name, metadata={"provider_error_code": "unknown_status"}), False
                interval = min(self.durations.interval(now - began), max(0.0, bound - (now - unknown_since)) + 0.001)
            else:
                unknown_since = None
                interval = self.durations.interval(time.monotonic() - began)
            await self._pause(interval, give_up, deadline)

    async def _download(self, job_id: str, give_up: Deadline, deadline: Deadline | None) -> list[Any]:
        """The snapshot's records; a 202 "not ready yet", a transient error or a garbled body is downloaded again
        (§2.4; records are billed once per snapshot, not per download). A ChatGPT record carries 2–3 MB of
        ``answer_html`` (providers-2026-12.md): bodies over :data:`THREAD_PARSE_BYTES` are parsed in a worker
        thread, and each record is cut to :data:`KEPT_FIELDS` there, so neither the parse nor the big fields stay
        on the event loop. Waits between attempts follow :class:`SnapshotDurations` (by the snapshot's age)."""
        began = self._submitted_at.get(job_id, time.monotonic())
        while True:
            try:
                resp = await self._send("GET", ("snapshot", job_id), params={"format": "json"}, deadline=deadline)
            except RetryableError:
                resp = None
            if resp is not None and resp.status_code == 200:
                content = resp.content
                del resp
                try:
                    if len(content) > THREAD_PARSE_BYTES:
                        return await anyio.to_thread.run_sync(parse_records, content)
                    return parse_records(content)
                except ValueError:  # a garbled delivery: download again (records are billed once, not per download)
                    log.info("brightdata_download_malformed", provider=self.name, snapshot_id=job_id)
                    resp = None
            if resp is not None and resp.status_code not in (200, 202):
                err = self._error(resp, f"snapshot {job_id}")
                if not isinstance(err, RetryableError):
                    raise err
            await self._pause(self.durations.interval(time.monotonic() - began), give_up, deadline)

    def _outcomes(self, job_id: str, records: list[Any], count: int, prompts: list[str], model: str) -> list[Outcome]:
        slots = match_records(records, prompts)
        if job_id in self._adopted and any(prompts) and not _all_ours(slots, prompts):
            log.warning("brightdata_adopted_not_ours", provider=self.name, snapshot_id=job_id)
            return [ItemFailure("UNAVAILABLE", f"snapshot {job_id}, adopted after an unreadable trigger answer, holds "
                                "other prompts than ours: the trigger's outcome is unknown", "unknown_snapshot",
                                self.name)] * count
        missing = f"batch returned {len(records)} records, expected {count}"
        out: list[Outcome] = []
        for rec in slots:
            if rec is None:
                out.append(ItemFailure("UNAVAILABLE", f"{missing} (snapshot {job_id})", "missing_record", self.name))
            elif rec.get("error") or rec.get("error_code"):
                out.append(ItemFailure("UNAVAILABLE", str(rec.get("error") or rec.get("error_code")),
                                       str(rec.get("error_code") or ""), self.name))
            elif not (rec.get("answer_text") or rec.get("answer_text_markdown")):
                out.append(ItemFailure("UNAVAILABLE", f"empty answer in snapshot {job_id}", "empty_answer", self.name))
            else:
                out.append(self._result(job_id, rec, model))
        return out

    def _result(self, job_id: str, rec: dict[str, Any], model: str) -> CompletionResult:
        markdown = str(rec.get("answer_text_markdown") or "")
        triggered = rec.get("web_search_triggered")
        cited = {c.url for c in citations_of({"citations": rec.get("citations")})}
        return CompletionResult(
            web_search_triggered=triggered if isinstance(triggered, bool) else None,
            links_attached=[c for c in citations_of({"links_attached": rec.get("links_attached")})
                            if c.url not in cited],
            text=str(rec.get("answer_text") or markdown),
            markdown=markdown,
            provider=self.name,
            model=str(rec.get("model") or model),
            citations=citations_of(rec),
            search_queries=[str(q) for q in _as_list(rec.get("web_search_query")) if q],
            cost_usd=pricing.record_cost_usd(self._settings, 1),
            finish_reason="stop",
            snapshot_id=job_id,
        )

    async def complete_batch(
        self, reqs: Sequence[CompletionRequest], *, deadline: Deadline | None = None
    ) -> list[Outcome]:
        """Trigger one snapshot for ``reqs`` and wait for its outcomes."""
        snapshot_id = await self.submit_batch(reqs, deadline=deadline)
        return await self.collect_batch(
            snapshot_id, len(reqs), prompts=[prompt_of(r) for r in reqs], model=reqs[0].model, deadline=deadline
        )

    async def complete(self, req: CompletionRequest, *, deadline: Deadline | None = None) -> CompletionResult:
        """One prompt as a snapshot of one (``Complete`` on a scraper model); a failed item raises its error."""
        deadline = deadline or Deadline(self._settings.brightdata_timeout_seconds)
        (outcome,) = await self.complete_batch([req], deadline=deadline)
        if isinstance(outcome, ItemFailure):
            raise error_from(outcome)
        return outcome

    def release_batch(self, job_id: str) -> None:
        """Give back the in-flight slot of a snapshot that will not be collected here (the stream that submitted
        it ended first). A no-op once :meth:`collect_batch` has run."""
        ticket = self._tickets.pop(job_id, None)
        if ticket is not None:
            self.in_flight.release_on_behalf_of(ticket)

    async def cancel_batch(self, job_id: str) -> bool:
        """``POST /datasets/v3/snapshot/{id}/cancel`` → 200 ``OK`` (docs.brightdata.com/api-reference/scrapers/
        management-apis/cancel-snapshot); True when Bright Data accepted it. ``InvalidArgument`` (field
        ``snapshot_id``) for an id that is not a snapshot id — nothing is sent then."""
        validate_snapshot_id(job_id)
        self._require_key()
        resp = await self._send("POST", ("snapshot", job_id, "cancel"),
                                deadline=Deadline(min(REQUEST_TIMEOUT, self._settings.provider_timeout_seconds)))
        if resp.status_code != 200:
            raise self._error(resp, f"snapshot {job_id}")
        log.info("brightdata_cancelled", provider=self.name, snapshot_id=job_id)
        return True

    async def _cancel_quietly(self, job_id: str) -> None:
        try:
            await self.cancel_batch(job_id)
        except VantageError as e:
            log.warning("brightdata_cancel_failed", provider=self.name, snapshot_id=job_id, error=e.message)


def error_of(resp: httpx.Response, what: str, *, provider: str, label: str) -> VantageError:
    """Our error for a non-2xx Bright Data answer.

    - 400 ``{"error": "Invalid input provided", "code": "validation_error", "errors": [[FIELD, REASON], …]}``
      (docs.brightdata.com/products/scrapers/error-codes) → ``InvalidArgument`` with one violation per pair, named
      after our request field (:data:`FIELD_OF_INPUT`: ``prompt`` → ``messages``, ``country`` → ``location``; other
      fields keep Bright Data's name), the description saying Bright Data's field and reason. The older
      ``{"validation_errors": [...]}`` shape (providers.md §2.5) is still read. ``parse_error`` and plain-text 400s
      (``No data to trigger``) → ``InvalidArgument(field="messages")``.
    - 404 → ``NotFound`` (snapshot or dataset does not exist); the rest by :func:`map_status`.
    """
    try:
        body: Any = resp.json()
    except ValueError:
        body = resp.text
    violations: list[tuple[str, str]] = []
    if isinstance(body, dict):
        pairs = body.get("errors") if body.get("code") == "validation_error" else None
        for pair in _as_list(pairs)[:20]:
            if isinstance(pair, list | tuple) and len(pair) >= 2:
                name, reason = str(pair[0])[:100], str(pair[1])[:300]
                violations.append((FIELD_OF_INPUT.get(name, name), f"Bright Data {name}: {reason}"))
        if violations:
            message = str(body.get("error") or "Invalid input provided") + ": " + "; ".join(
                d.removeprefix("Bright Data ") for _, d in violations)
        elif body.get("validation_errors"):
            message = "; ".join(str(v) for v in _as_list(body["validation_errors"]))
        else:
            message = str(body.get("error") or body.get("message") or body)
    else:
        message = str(body)
    message = message.strip()[:500]
    if resp.status_code == 404:
        return NotFound(f"{label} {what}: {message or 'not found'}", provider=provider,
                        reason="NOT_FOUND", metadata={"status": "404"})
    err = map_status(resp.status_code, message, provider=provider, label=label, key_env=KEY_ENV,
                     headers=resp.headers, code=str(body.get("code") or "") if isinstance(body, dict) else "")
    if isinstance(err, InvalidArgument) and err.reason == "PROVIDER_BAD_REQUEST":
        err.violations = violations or [("messages", err.message)]
    return err


def _all_ours(slots: Sequence[dict[str, Any] | None], prompts: Sequence[str]) -> bool:
    """True when every record that carries a prompt (its own or its echoed input's) carries ours, at its place."""
    for rec, prompt in zip(slots, prompts, strict=False):
        if rec is None:
            continue
        theirs = _echo(rec).get("prompt", rec.get("prompt"))
        if theirs is not None and prompt and theirs != prompt:
            return False
    return True


def _carries_exactly(records: Sequence[Any], prompts: Sequence[str]) -> bool:
    """True when ``records`` are a snapshot of ``prompts``: at least one, each carrying a prompt (its own or its
    echoed input's, §2.6) and together no prompt that is not one of ours (a record may be missing: Bright Data can
    drop an input, which then fails as "batch returned X records")."""
    ours = CounterOf(prompts)
    seen: CounterOf[str] = CounterOf()
    for rec in records:
        if not isinstance(rec, dict):
            return False
        theirs = _echo(rec).get("prompt", rec.get("prompt"))
        if not isinstance(theirs, str):
            return False
        seen[theirs] += 1
    return bool(seen) and all(ours[p] >= k for p, k in seen.items())


def parse_records(content: bytes) -> list[Any]:
    """The records of a downloaded snapshot (a JSON array; some deliveries wrap it in ``{"data"|"records": […]}``),
    each cut to :data:`KEPT_FIELDS`. ``ValueError`` when the body is not JSON. Pure: safe in a worker thread."""
    body = json.loads(content)
    if isinstance(body, dict):
        body = body.get("data") or body.get("records") or []
    if not isinstance(body, list):
        return []
    return [{k: v for k, v in r.items() if k in KEPT_FIELDS} if isinstance(r, dict) else r for r in body]


def _unix(value: Any) -> float | None:
    """Unix seconds of a snapshot's ``created`` (ISO 8601, or a number), None when absent or unparsable."""
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class _GaveUp(Exception):
    """``settings.brightdata_timeout_seconds`` passed while waiting for a snapshot."""
