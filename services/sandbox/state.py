"""Per-app runtime state: knobs, counters, seeded RNGs, the corpus and Bright Data snapshots."""

from __future__ import annotations

import hashlib
import math
import random
from collections import Counter
from typing import Any

from .config import EndpointKnobs, Knobs, SandboxSettings
from .corpus import Corpus, load_corpus
from .stats import Stats


class SandboxState:
    """Everything a request handler needs; one instance per app (``app.state.sandbox``)."""

    def __init__(self, settings: SandboxSettings) -> None:
        self.settings = settings
        self.knobs: Knobs = settings.knobs()
        self.stats = Stats()
        self.corpus: Corpus = load_corpus()
        self._rngs: dict[str, random.Random] = {}
        self._bodies_seen: Counter[tuple[str, bytes]] = Counter()
        # Imported here to avoid a cycle (brightdata imports state for type hints only).
        from .brightdata import SnapshotStore

        self.snapshots = SnapshotStore()

    # -- knobs --------------------------------------------------------------------------------
    def update_knobs(self, patch: dict[str, Any]) -> Knobs:
        """Apply a JSON merge-patch; raises pydantic.ValidationError and keeps the old knobs."""
        new = self.knobs.merged(patch)
        if new.seed != self.knobs.seed:
            self._rngs.clear()
            self._bodies_seen.clear()
        self.knobs = new
        return new

    def reset(self) -> None:
        """Zero counters, forget snapshots, and re-seed RNGs (knobs are kept)."""
        self.stats.reset()
        self._rngs.clear()
        self._bodies_seen.clear()
        self.snapshots.clear()

    # -- randomness ------------------------------------------------------------------------------
    def rng(self, stream: str) -> random.Random:
        """A deterministic RNG per stream (e.g. an endpoint name), seeded from ``knobs.seed``.

        One stream per endpoint keeps each endpoint's fault sequence reproducible even when
        requests to different endpoints interleave differently from run to run.
        """
        r = self._rngs.get(stream)
        if r is None:
            r = self._rngs[stream] = random.Random(f"{self.knobs.seed}:{stream}")
        return r

    def draw_latency(self, endpoint: str, k: EndpointKnobs) -> float:
        """Seconds of added latency: fixed if ``latency_cv`` is 0, else lognormal(mean, CV)."""
        if k.latency_s <= 0:
            return 0.0
        if k.latency_cv <= 0:
            return k.latency_s
        sigma2 = math.log(1.0 + k.latency_cv**2)
        mu = math.log(k.latency_s) - sigma2 / 2.0
        return self.rng(endpoint + ":latency").lognormvariate(mu, math.sqrt(sigma2))

    def draw_fault(self, endpoint: str, k: EndpointKnobs, request: bytes | None = None) -> str | None:
        """One uniform draw split across the configured fault rates (None = no fault).

        With ``knobs.fault_draws == "request"`` and a ``request`` key (path, query and body:
        :func:`services.sandbox.faults.request_key`), the draw comes from the seed, the endpoint, a digest of the key
        and how many times this endpoint has seen it (0 for the first attempt, 1 for its first retry…): the same calls get the same faults in every run of a test, whatever order concurrent requests
        arrive in, so a chaos failure replays exactly. Each attempt is still an independent draw at the same rates:
        the providers treat these errors as transient for the *same* request — the OpenAI and Anthropic SDKs resend
        an identical request on 408/409/429/≥ 500 and connection errors (providers.md §3.3, §4.3), as Tavily's 429
        and 5xx invite (§1.4) — so a retry must be able to succeed. How often a fault occurs is the test's knob, not
        a provider fact; what each fault answers (status, body, headers) follows the providers' documented errors
        (:mod:`services.sandbox.faults`, :mod:`services.sandbox.errors`).
        """
        kinds = (
            ("429", k.rate_429),
            ("500", k.rate_500),
            ("503", k.rate_503),
            ("hang", k.rate_hang),
            ("reset", k.rate_reset),
            ("malformed", k.rate_malformed),
            ("truncated", k.rate_truncated),
            ("oversize", k.rate_oversize),
        )
        if sum(rate for _, rate in kinds) <= 0:
            return None
        if self.knobs.fault_draws == "request" and request is not None:
            digest = hashlib.blake2b(request, digest_size=16).digest()
            seen = self._bodies_seen[(endpoint, digest)]
            self._bodies_seen[(endpoint, digest)] = seen + 1
            u = random.Random(f"{self.knobs.seed}:{endpoint}:fault:{digest.hex()}:{seen}").random()
        else:
            u = self.rng(endpoint + ":fault").random()
        for kind, rate in kinds:
            if u < rate:
                return kind
            u -= rate
        return None
