"""Queries of ORG_EVAL runs (AI visibility), over the same :class:`~services.orchestrator.store.repo.Store` (engine,
write serialisation on SQLite, dialect inserts, event sequence numbers).

The rules of :mod:`services.orchestrator.store.repo` hold here too:

- every result write is idempotent (``INSERT … ON CONFLICT DO NOTHING`` on its unique key; an answer is written
  once — the first one wins — by an ``UPDATE … WHERE status <> 'answered'``);
- every write of an item's outcome is fenced: it happens in a transaction that first bumps ``run_items.updated_at``
  ``WHERE attempts = :attempt AND status = 'running'`` and changes nothing when that matched no row (a stale holder);
- a provider batch (Bright Data snapshot) is recorded — with its member items in submission order and a pending
  ledger row per member — the moment the inference service announces it, before its answers exist, so that a
  resumed run re-polls it (``ResumeBatch``) instead of triggering it again.

Shapes: ``member_ids`` are ``run_items.id`` strings; money in USD; tokens as the provider counts them; a Bright Data
answer is one record (``unit_type = 'records'``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, case, exists, func, literal, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.orchestrator.domain import company_key, normalise_domain
from services.orchestrator.store import models as m
from services.orchestrator.store.repo import ClaimedItem, Store, new_id, utcnow

#: Rows per INSERT when a run's matrix is stored.
MATRIX_BATCH = 500
#: Characters of the question kept in an item's label (``run_items.company``).
LABEL_QUESTION_CHARS = 70


def org_key(name: str, domain: str) -> str:
    """Identity of an org across runs: ``"together ai|together.ai"``."""
    return f"{company_key(name)}|{normalise_domain(domain)}"


def item_key(question_id: str, model: str, location: str, sample: int = 0, samples: int = 1) -> str:
    """``run_items.key`` of a question run: ``"<question_id>|<model>|<location>"`` in a run of one sample per cell
    (the format of runs stored before repeated samples), ``"<question_id>|<model>|<location>|<sample>"`` (0-based)
    when the run asks each cell ``samples`` > 1 times."""
    base = f"{question_id}|{model}|{location}"
    return base if samples <= 1 else f"{base}|{sample}"


def item_label(seq: int, text: str, model: str, location: str, sample: int = 0, samples: int = 1) -> str:
    """Human label of a question run (``run_items.company``; shown in progress lines and events):
    ``"chatgpt US · Q3 What are the best GPU clouds…"``, with the sample when there are several:
    ``"chatgpt US · Q3 #2/3 What are the best GPU clouds…"`` (1-based in the label)."""
    q = " ".join(text.split())
    if len(q) > LABEL_QUESTION_CHARS:
        q = q[: LABEL_QUESTION_CHARS - 1] + "…"
    which = f" #{sample + 1}/{samples}" if samples > 1 else ""
    return f"{model} {location or '-'} · Q{seq}{which} {q}"


# --- values -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrgRow:
    id: str
    name: str
    domain: str
    name_variations: list[str]
    variations_model: str | None


@dataclass(frozen=True)
class QuestionRunState:
    """What the pipeline needs to know about one question run before working on it."""

    item_id: str
    question_id: str
    question: str
    question_seq: int
    model: str
    location: str
    status: str  # pending | answered | failed
    provider: str | None
    answer_markdown: str | None
    answer_text: str | None
    citations: list[dict[str, str]]
    snapshot_id: str | None
    batch_status: str | None  # status of provider_batches[snapshot_id], None when there is none
    batch_members: list[str]  # that batch's member item ids, in submission order
    has_evaluation: bool
    sample: int = 0  # the repeat of (question, model, location) within the run, 0-based

    @property
    def answered(self) -> bool:
        return self.status == "answered"

    @property
    def resumable(self) -> bool:
        """Not answered, and its snapshot is still in flight: re-poll it, never trigger again."""
        return not self.answered and bool(self.snapshot_id) and self.batch_status == "submitted"


@dataclass(frozen=True)
class Answer:
    """An assistant's answer as the inference service returned it. ``cost_usd`` USD (0 on a cache hit)."""

    provider: str
    markdown: str
    text: str
    citations: list[dict[str, str]]  # [{url, title}]
    search_queries: list[str]
    snapshot_id: str
    cost_usd: float
    input_tokens: int
    output_tokens: int
    web_search_calls: int
    cached: bool
    #: Bright Data only: the record's ``web_search_triggered`` (None = not said) and the links it showed without
    #: citing them ([{url, title}]).
    web_search_triggered: bool | None = None
    links_attached: list[dict[str, str]] = field(default_factory=list)
    #: The model as the provider reported it for this answer (CompleteResponse.model; "" = not said).
    model_version: str = ""


@dataclass(frozen=True)
class Bill:
    """The ledger row an answer completes (``key``), or creates when it has none yet."""

    key: str
    provider: str
    kind: str  # scrape | llm
    unit_type: str  # records | tokens
    units: int
    usd: float
    input_tokens: int = 0
    output_tokens: int = 0
    cost_estimated: bool = False  # the USD is an estimate: model missing from the model catalogue (#18)


@dataclass(frozen=True)
class Evaluation:
    """The extraction of one answer (ExtractionService/Extract), flattened for the database."""

    mentioned: bool
    mention_count: int
    rank: int
    first_offset: int
    sentiment: str
    evidence: str
    owned_citation_count: int
    competitors: list[tuple[str, int, int]] = field(default_factory=list)  # (name, rank, mention_count)
    # (position, url, domain, title, source, owned, competitor, competitor_name)
    citations: list[tuple[int, str, str, str, str, bool, bool, str]] = field(default_factory=list)


@dataclass(frozen=True)
class BatchRow:
    snapshot_id: str
    provider: str
    model: str
    location: str
    status: str
    member_ids: list[str]


@dataclass
class MatrixReport:
    """What :meth:`EvalStore.add_matrix` stored."""

    questions: int = 0
    items: int = 0
    skipped_questions: list[str] = field(default_factory=list)
    samples: int = 1  # times each question × model × location is asked


@dataclass
class ReuseReport:
    """What :meth:`EvalStore.copy_answers` copied from an earlier sweep."""

    copied: int = 0  # question runs answered from the earlier sweep
    missing: int = 0  # question runs the earlier sweep has no answer for (asked)


class EvalStore:
    """ORG_EVAL queries over a :class:`Store` (shares its engine and its SQLite write lock)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.engine = store.engine

    # --- orgs ---------------------------------------------------------------------------------------------------

    async def get_or_create_org(self, name: str, domain: str, variations: Sequence[str]) -> OrgRow:
        """The org with this name and domain; created with ``variations`` when new (an existing org keeps its
        stored variations: they are reused across runs)."""
        key = org_key(name, domain)
        now = utcnow()

        async def op(conn: AsyncConnection) -> Any:
            await conn.execute(
                self.store.insert(m.orgs)
                .values(id=new_id(), key=key, name=" ".join(name.split()), domain=normalise_domain(domain),
                        name_variations=list(variations), variations_model=None, created_at=now, updated_at=now)
                .on_conflict_do_nothing(index_elements=["key"])
            )

        await self.store.transaction(op, "get_or_create_org")
        org = await self._org_where(m.orgs.c.key == key)
        assert org is not None
        return org

    async def get_org(self, org_id: str) -> OrgRow | None:
        return await self._org_where(m.orgs.c.id == org_id)

    async def _org_where(self, cond: Any) -> OrgRow | None:

        async def read(conn: AsyncConnection) -> Any:
            r = (await conn.execute(select(m.orgs).where(cond))).mappings().first()
            return r

        r = await self.store.read(read, "_org_where")
        if r is None:
            return None
        return OrgRow(r["id"], r["name"], r["domain"], list(r["name_variations"] or []), r["variations_model"])

    async def set_org_variations(self, org_id: str, variations: Sequence[str], model: str | None) -> None:

        async def op(conn: AsyncConnection) -> Any:
            await conn.execute(
                update(m.orgs).where(m.orgs.c.id == org_id)
                .values(name_variations=list(variations), variations_model=model, updated_at=utcnow())
            )

        await self.store.transaction(op, "set_org_variations")

    # --- the matrix ---------------------------------------------------------------------------------------------

    async def add_matrix(
        self, run_id: str, questions: Iterable[str], models: Sequence[str], locations: Sequence[str],
        samples: int = 1,
    ) -> MatrixReport:
        """Store the run's questions and one item + question run per (question, model, location, sample), samples
        0 … ``samples`` − 1.

        Item ``seq`` runs model-major, then location, then sample, then question, so that the questions of one
        (model, location) group are claimed together and fill whole provider batches (a snapshot then holds distinct
        prompts as far as it can; the K samples of a prompt are K records all the same). Blank questions and repeats
        (case-insensitive) are skipped and reported. Raises ValueError when ``samples`` < 1."""
        if samples < 1:
            raise ValueError(f"samples must be >= 1, got {samples}")
        report = MatrixReport(samples=samples)
        seen: set[str] = set()
        qrows: list[dict[str, Any]] = []
        for n, raw in enumerate(questions, start=1):
            text = " ".join(str(raw).split())
            if not text:
                continue
            if text.casefold() in seen:
                report.skipped_questions.append(f"question {n} repeats an earlier one: {text[:80]}")
                continue
            seen.add(text.casefold())
            qrows.append({"id": new_id(), "run_id": run_id, "seq": len(qrows) + 1, "text": text})
        report.questions = len(qrows)
        if not qrows:
            return report
        now = utcnow()
        items: list[dict[str, Any]] = []
        qruns: list[dict[str, Any]] = []
        seq = 0
        for model in models:
            for loc in locations:
                for k in range(samples):
                    for q in qrows:
                        seq += 1
                        iid = new_id()
                        items.append({
                            "id": iid, "run_id": run_id, "seq": seq, "key": item_key(q["id"], model, loc, k, samples),
                            "company": item_label(q["seq"], q["text"], model, loc, k, samples), "domain": "",
                            "status": "pending", "attempts": 0, "last_error": None, "truncated": False,
                            "updated_at": now,
                        })
                        qruns.append({
                            "item_id": iid, "run_id": run_id, "question_id": q["id"], "model": model,
                            "location": loc, "sample": k, "status": "pending", "cost_usd": 0, "input_tokens": 0,
                            "output_tokens": 0, "web_search_calls": 0, "cached": False,
                        })

        async def op(conn: AsyncConnection) -> Any:
            for i in range(0, len(qrows), MATRIX_BATCH):
                await conn.execute(m.questions.insert(), qrows[i : i + MATRIX_BATCH])
            for i in range(0, len(items), MATRIX_BATCH):
                await conn.execute(
                    self.store.insert(m.run_items).values(items[i : i + MATRIX_BATCH])
                    .on_conflict_do_nothing(index_elements=["run_id", "key"])
                )
                await conn.execute(
                    self.store.insert(m.question_runs).values(qruns[i : i + MATRIX_BATCH])
                    .on_conflict_do_nothing(index_elements=["item_id"])
                )

        await self.store.transaction(op, "add_matrix")
        report.items = len(items)
        return report

    async def question_texts(self, run_id: str) -> list[str]:
        async def read(conn: AsyncConnection) -> Any:
            rows = await conn.execute(
                select(m.questions.c.text).where(m.questions.c.run_id == run_id).order_by(m.questions.c.seq)
            )
            return [r[0] for r in rows]

        return await self.store.read(read, "question_texts")

    # --- one question run ---------------------------------------------------------------------------------------

    def _state_query(self) -> Any:
        qr, q, pb, it = m.question_runs.c, m.questions.c, m.provider_batches.c, m.run_items.c
        has_eval = exists().where(m.org_evals.c.item_id == qr.item_id)
        return (
            select(
                qr.item_id, qr.question_id, q.text, q.seq, qr.model, qr.location, qr.status, qr.provider,
                qr.answer_markdown, qr.answer_text, qr.citations, qr.snapshot_id, pb.status.label("batch_status"),
                pb.member_ids, has_eval.label("has_eval"), qr.sample,
            )
            .select_from(
                m.question_runs.join(m.questions, q.id == qr.question_id)
                .join(m.run_items, it.id == qr.item_id)
                .outerjoin(m.provider_batches, pb.snapshot_id == qr.snapshot_id)
            )
        )

    @staticmethod
    def _state(r: Any) -> QuestionRunState:
        return QuestionRunState(
            item_id=r.item_id, question_id=r.question_id, question=r.text, question_seq=r.seq, model=r.model,
            location=r.location, status=r.status, provider=r.provider, answer_markdown=r.answer_markdown,
            answer_text=r.answer_text, citations=list(r.citations or []), snapshot_id=r.snapshot_id,
            batch_status=r.batch_status, batch_members=list(r.member_ids or []), has_evaluation=bool(r.has_eval),
            sample=int(r.sample or 0),
        )

    async def load(self, item_id: str) -> QuestionRunState | None:
        """The state of one question run (None when the item has none)."""

        async def read(conn: AsyncConnection) -> Any:
            r = (await conn.execute(self._state_query().where(m.question_runs.c.item_id == item_id))).first()
            return r

        r = await self.store.read(read, "load")
        return None if r is None else self._state(r)

    async def load_ahead(self, run_id: str, from_seq: int, limit: int) -> list[QuestionRunState]:
        """States of the run's unfinished question runs from item ``from_seq`` on, in item order, ``limit`` at
        most: one query for the items a claim batch hands over together (read-ahead)."""
        it = m.run_items.c
        stmt = (
            self._state_query()
            .where(it.run_id == run_id, it.seq >= from_seq, it.status.in_(("pending", "running")))
            .order_by(it.seq)
            .limit(limit)
        )

        async def read(conn: AsyncConnection) -> Any:
            return [self._state(r) for r in await conn.execute(stmt)]

        return await self.store.read(read, "load_ahead")

    async def _fence(self, conn: AsyncConnection, item: ClaimedItem) -> bool:
        """True when ``item.attempt`` is still the current claim of a running item (row-locked until commit on
        PostgreSQL)."""
        it = m.run_items.c
        res = await conn.execute(
            update(m.run_items)
            .where(it.id == item.id, it.attempts == item.attempt, it.status == "running")
            .values(updated_at=utcnow())
        )
        return res.rowcount == 1

    async def record_batch(
        self, run_id: str, snapshot_id: str, provider: str, model: str, location: str, member_ids: Sequence[str],
        ledger_keys: Sequence[str],
    ) -> None:
        """A provider batch was submitted: store it with its members (submission order), point the members'
        question runs at it (back to ``pending`` if they had failed before), and write one pending ledger row per
        member (``ledger_keys[i]`` for ``member_ids[i]``). One transaction; idempotent. Not fenced: the snapshot
        exists whoever triggered it, and forgetting it would mean paying for it again."""
        now = utcnow()
        members = list(member_ids)
        qr = m.question_runs.c

        async def op(conn: AsyncConnection) -> Any:
            await conn.execute(
                self.store.insert(m.provider_batches)
                .values(snapshot_id=snapshot_id, provider=provider, model=model, location=location, run_id=run_id,
                        status="submitted", member_ids=members, created_at=now, updated_at=now)
                .on_conflict_do_nothing(index_elements=["snapshot_id"])
            )
            if members:
                await conn.execute(
                    update(m.question_runs)
                    .where(qr.item_id.in_(members), qr.status != "answered")
                    .values(snapshot_id=snapshot_id, status="pending", error=None, error_code=None, provider=provider)
                )
                await conn.execute(
                    self.store.insert(m.cost_ledger)
                    .values([
                        {"run_id": run_id, "item_id": iid, "provider": provider, "kind": "scrape",
                         "idempotency_key": key, "units": 0, "unit_type": "records", "input_tokens": 0,
                         "output_tokens": 0, "usd": 0, "status": "pending", "created_at": now}
                        for iid, key in zip(members, ledger_keys, strict=True)
                    ])
                    .on_conflict_do_nothing(index_elements=["idempotency_key"])
                )

        await self.store.write(op)

    async def record_answer(self, item: ClaimedItem, a: Answer, bill: Bill | None) -> bool:
        """Store the answer of a question run (the first answer wins) and complete its ledger row (``bill``; None
        = not billed: a cache hit). Fenced; False (nothing written) for a stale attempt."""
        now = utcnow()
        qr = m.question_runs.c

        async def op(conn: AsyncConnection) -> Any:
            if not await self._fence(conn, item):
                return False
            await conn.execute(
                update(m.question_runs)
                .where(qr.item_id == item.id, qr.status != "answered")
                .values(
                    status="answered", provider=a.provider, answer_markdown=a.markdown, answer_text=a.text,
                    citations=list(a.citations), search_queries=list(a.search_queries),
                    snapshot_id=a.snapshot_id or qr.snapshot_id, error=None, error_code=None, cost_usd=a.cost_usd,
                    input_tokens=a.input_tokens, output_tokens=a.output_tokens, web_search_calls=a.web_search_calls,
                    cached=a.cached, answered_at=now, web_search_triggered=a.web_search_triggered,
                    links_attached=list(a.links_attached) or None, model_version=a.model_version or None,
                )
            )
            if bill is not None:
                await self._bill(conn, item, bill, now)
            if a.snapshot_id:
                await self._settle_batch(conn, a.snapshot_id)
            return True

        return bool(await self.store.write(op))

    async def _bill(self, conn: AsyncConnection, item: ClaimedItem, b: Bill, now: Any) -> None:
        led = m.cost_ledger.c
        values = {"units": b.units, "usd": b.usd, "input_tokens": b.input_tokens, "output_tokens": b.output_tokens,
                  "provider": b.provider, "status": "completed", "cost_estimated": b.cost_estimated}
        # "abandoned": the attempt was thought dead (lease lost) but answered after all — the call was paid.
        res = await conn.execute(
            update(m.cost_ledger)
            .where(led.idempotency_key == b.key, led.status.in_(("pending", "abandoned")))
            .values(**values)
        )
        if res.rowcount == 0:  # no pending row (e.g. a resumed snapshot recorded by another version): write one
            await conn.execute(
                self.store.insert(m.cost_ledger)
                .values(run_id=item.run_id, item_id=item.id, kind=b.kind, idempotency_key=b.key,
                        unit_type=b.unit_type, created_at=now, **values)
                .on_conflict_do_nothing(index_elements=["idempotency_key"])
            )

    async def _settle_batch(self, conn: AsyncConnection, snapshot_id: str) -> None:
        """Once no member of the snapshot waits for its answer any more, mark it ``ready`` (some answered) or
        ``failed`` (none did). The batch row is locked first (PostgreSQL): members settling in concurrent
        transactions then check one after the other, each seeing the ones that committed before it, so the last one
        always sees every member settled."""
        qr, pb = m.question_runs.c, m.provider_batches.c
        await conn.execute(select(pb.snapshot_id).where(pb.snapshot_id == snapshot_id).with_for_update())
        waiting = exists().where(qr.snapshot_id == snapshot_id, qr.status == "pending")
        answered = exists().where(qr.snapshot_id == snapshot_id, qr.status == "answered")
        await conn.execute(
            update(m.provider_batches)
            .where(pb.snapshot_id == snapshot_id, pb.status == "submitted", ~waiting)
            .values(status=case((answered, literal("ready")), else_=literal("failed")), updated_at=utcnow())
        )

    async def record_failure(
        self, item: ClaimedItem, *, reason: str, error: str, error_code: str, provider: str, snapshot_id: str,
        discard_key: str | None,
    ) -> bool:
        """The provider failed this question run (a Bright Data error record, a failed snapshot, an API error):
        store the error on the question run (never as an answer), fail the item with ``reason``, drop the pending
        ledger row ``discard_key`` (not billed). Fenced; False for a stale attempt."""
        qr, it, led = m.question_runs.c, m.run_items.c, m.cost_ledger.c
        now = utcnow()

        async def op(conn: AsyncConnection) -> Any:
            if not await self._fence(conn, item):
                return False
            await conn.execute(
                update(m.question_runs)
                .where(qr.item_id == item.id, qr.status != "answered")
                .values(status="failed", error=error, error_code=error_code or None, provider=provider or qr.provider,
                        snapshot_id=snapshot_id or qr.snapshot_id)
            )
            if discard_key:
                await conn.execute(
                    m.cost_ledger.delete().where(
                        led.idempotency_key == discard_key, led.status.in_(("pending", "abandoned"))
                    )
                )
            await conn.execute(
                update(m.run_items).where(it.id == item.id)
                .values(status="failed", last_error=reason, lease_owner=None, lease_expires_at=None, updated_at=now)
            )
            if snapshot_id:
                await self._settle_batch(conn, snapshot_id)
            await self.store.append_events(conn, item.run_id, [("ITEM_FAILED", item.id, item.company, reason)])
            return True

        return bool(await self.store.write(op))

    async def complete(self, item: ClaimedItem, ev: Evaluation, message: str, *, replace: bool = False) -> bool:
        """Store the extraction of an answered question run and mark the item done, in one transaction. Fenced;
        False for a stale attempt. ``replace``: the answer was read before (``vantage reextract``, an answer whose
        extraction exists): its ``org_evals`` / ``org_competitors`` / ``org_citations`` rows are replaced, and a
        competitor name keeps the canonical name the run already gave it (no merge call is paid again for it)."""
        it, oc = m.run_items.c, m.org_competitors.c
        now = utcnow()

        async def op(conn: AsyncConnection) -> Any:
            if not await self._fence(conn, item):
                return False
            canon: dict[str, str] = {}
            if replace:
                names = list({c[0] for c in ev.competitors})
                if names:
                    for name, c in await conn.execute(
                        select(oc.name, oc.canonical)
                        .where(oc.run_id == item.run_id, oc.name.in_(names), oc.canonical.is_not(None))
                    ):
                        canon.setdefault(name, c)
                for t in (m.org_evals, m.org_competitors, m.org_citations):
                    await conn.execute(t.delete().where(t.c.item_id == item.id))
            await conn.execute(
                self.store.insert(m.org_evals)
                .values(item_id=item.id, run_id=item.run_id, mentioned=ev.mentioned, mention_count=ev.mention_count,
                        rank=ev.rank, first_offset=ev.first_offset, sentiment=ev.sentiment, evidence=ev.evidence,
                        owned_citation_count=ev.owned_citation_count, created_at=now)
                .on_conflict_do_nothing(index_elements=["item_id"])
            )
            comps = _unique_by(ev.competitors, key=lambda c: c[0])
            if comps:
                await conn.execute(
                    self.store.insert(m.org_competitors)
                    .values([{"item_id": item.id, "run_id": item.run_id, "name": n, "rank": r, "mention_count": c,
                              "canonical": canon.get(n)} for n, r, c in comps])
                    .on_conflict_do_nothing(index_elements=["item_id", "name"])
                )
            cites = _unique_by(ev.citations, key=lambda c: c[1])
            if cites:
                await conn.execute(
                    self.store.insert(m.org_citations)
                    .values([{"item_id": item.id, "run_id": item.run_id, "position": p, "url": u, "domain": d,
                              "title": t, "source": s, "owned": o, "competitor": c, "competitor_name": cn}
                             for p, u, d, t, s, o, c, cn in cites])
                    .on_conflict_do_nothing(index_elements=["item_id", "url"])
                )
            await conn.execute(
                update(m.run_items).where(it.id == item.id)
                .values(status="done", last_error=None, lease_owner=None, lease_expires_at=None, updated_at=now)
            )
            await self.store.append_events(conn, item.run_id, [("ITEM_DONE", item.id, item.company, message)])
            return True

        return bool(await self.store.write(op))

    # --- sweeps: answers copied from an earlier one, extraction again -------------------------------------------

    async def copy_answers(self, run_id: str, source_run_id: str) -> ReuseReport:
        """``--reuse-answers``: give each question run of ``run_id`` the answer of the question run of
        ``source_run_id`` with the same question (text, whitespace collapsed and case-folded), model
        (case-insensitive), location and sample, when that one was answered: status ``answered``, ``cached``, cost
        0 (the earlier sweep paid for it), ``reused_from_run`` = ``source_run_id``, its model version. The items
        stay pending: extraction reads the copied answers when the run executes; the others are asked."""
        qr, q = m.question_runs.c, m.questions.c

        def key(text: str, model: str, location: str, sample: int) -> tuple[str, str, str, int]:
            return (" ".join(text.split()).casefold(), model.casefold(), location or "", int(sample or 0))

        async def read(conn: AsyncConnection) -> Any:
            src = await conn.execute(
                select(q.text, qr.model, qr.location, qr.sample, qr.provider, qr.answer_markdown, qr.answer_text,
                       qr.citations, qr.search_queries, qr.web_search_triggered, qr.links_attached,
                       qr.model_version, qr.answered_at)
                .select_from(m.question_runs.join(m.questions, q.id == qr.question_id))
                .where(qr.run_id == source_run_id, qr.status == "answered")
            )
            answers = {key(r[0], r[1], r[2], r[3]): r for r in src}
            dst = await conn.execute(
                select(qr.item_id, q.text, qr.model, qr.location, qr.sample)
                .select_from(m.question_runs.join(m.questions, q.id == qr.question_id))
                .where(qr.run_id == run_id, qr.status != "answered")
            )
            return answers, [tuple(r) for r in dst]

        answers, targets = await self.store.read(read, "copy_answers_read")
        report = ReuseReport()
        updates: list[tuple[str, Any]] = []
        for item_id, text, model, loc, sample in targets:
            a = answers.get(key(text, model, loc, sample))
            if a is None:
                report.missing += 1
            else:
                updates.append((item_id, a))
        report.copied = len(updates)
        if not updates:
            return report

        async def op(conn: AsyncConnection) -> Any:
            for item_id, a in updates:
                await conn.execute(
                    update(m.question_runs)
                    .where(qr.item_id == item_id, qr.status != "answered")
                    .values(status="answered", provider=a.provider, answer_markdown=a.answer_markdown,
                            answer_text=a.answer_text, citations=a.citations, search_queries=a.search_queries,
                            web_search_triggered=a.web_search_triggered, links_attached=a.links_attached,
                            model_version=a.model_version, answered_at=a.answered_at, cached=True, cost_usd=0,
                            input_tokens=0, output_tokens=0, web_search_calls=0, snapshot_id=None, error=None,
                            error_code=None, reused_from_run=source_run_id)
                )

        await self.store.transaction(op, "copy_answers")
        return report

    async def requeue_answered(self, run_id: str) -> int:
        """``vantage reextract``: the finished items of ``run_id`` whose question run holds an answer back to
        ``pending`` (executing the run then only reads them again: no provider is asked). Items without an answer
        (a provider failure) are left as they are. Returns how many."""
        it, qr = m.run_items.c, m.question_runs.c
        answered = select(qr.item_id).where(qr.run_id == run_id, qr.status == "answered").scalar_subquery()

        async def op(conn: AsyncConnection) -> Any:
            res = await conn.execute(
                update(m.run_items)
                .where(it.run_id == run_id, it.status.in_(("done", "failed")), it.id.in_(answered))
                .values(status="pending", last_error=None, lease_owner=None, lease_expires_at=None,
                        updated_at=utcnow())
            )
            return int(res.rowcount or 0)

        return int(await self.store.transaction(op, "requeue_answered"))

    # --- provider batches ---------------------------------------------------------------------------------------

    async def batches(self, run_id: str, statuses: Sequence[str] | None = None) -> list[BatchRow]:
        pb = m.provider_batches.c
        q = select(m.provider_batches).where(pb.run_id == run_id).order_by(pb.created_at, pb.snapshot_id)
        if statuses:
            q = q.where(pb.status.in_(list(statuses)))

        async def read(conn: AsyncConnection) -> Any:
            rows = (await conn.execute(q)).mappings().all()
            return rows

        rows = await self.store.read(read, "batches")
        return [BatchRow(r["snapshot_id"], r["provider"], r["model"], r["location"], r["status"],
                         list(r["member_ids"] or [])) for r in rows]

    async def set_batch_status(self, snapshot_id: str, status: str, *, only_from: Sequence[str] = ("submitted",)
                               ) -> bool:
        pb = m.provider_batches.c

        async def op(conn: AsyncConnection) -> Any:
            res = await conn.execute(
                update(m.provider_batches)
                .where(pb.snapshot_id == snapshot_id, pb.status.in_(list(only_from)))
                .values(status=status, updated_at=utcnow())
            )
            return res.rowcount == 1

        return await self.store.transaction(op, "set_batch_status")

    async def discard_pending_ledger(self, run_id: str, keys: Sequence[str]) -> int:
        """Drop pending ledger rows (calls that will never be billed, e.g. the members of a cancelled snapshot)."""
        if not keys:
            return 0
        led = m.cost_ledger.c

        async def op(conn: AsyncConnection) -> Any:
            res = await conn.execute(
                m.cost_ledger.delete().where(
                    led.run_id == run_id, led.idempotency_key.in_(list(keys)), led.status == "pending"
                )
            )
            return int(res.rowcount or 0)

        return await self.store.transaction(op, "discard_pending_ledger")

    # --- competitor names ---------------------------------------------------------------------------------------

    async def competitor_names(self, run_id: str, *, unmerged_only: bool = False) -> list[str]:
        """Distinct competitor names found in the run's answers (those without a canonical name only, when
        ``unmerged_only``)."""
        oc = m.org_competitors.c
        q = select(oc.name).where(oc.run_id == run_id).distinct().order_by(oc.name)
        if unmerged_only:
            q = q.where(oc.canonical.is_(None))

        async def read(conn: AsyncConnection) -> Any:
            return [r[0] for r in await conn.execute(q)]

        return await self.store.read(read, "competitor_names")

    async def set_canonical_names(self, run_id: str, mapping: dict[str, str]) -> None:
        """``{name: canonical}`` onto the run's competitor rows."""
        oc = m.org_competitors.c

        async def op(conn: AsyncConnection) -> Any:
            for name, canon in mapping.items():
                await conn.execute(
                    update(m.org_competitors).where(oc.run_id == run_id, oc.name == name).values(canonical=canon)
                )

        await self.store.transaction(op, "set_canonical_names")

    # --- report queries -----------------------------------------------------------------------------------------

    async def group_stats(self, run_id: str) -> list[dict[str, Any]]:
        """Per (model, location): question runs, answered, answered from the response cache, failed (provider),
        evaluated, mentioned, Σ rank and count of ranked mentions, Σ org mentions."""
        qr, it, oe = m.question_runs.c, m.run_items.c, m.org_evals.c
        stmt = (
            select(
                qr.model, qr.location,
                func.count().label("question_runs"),
                func.sum(case((it.status.in_(("done", "failed", "skipped")), 1), else_=0)).label("finished"),
                func.sum(case((qr.status == "answered", 1), else_=0)).label("answered"),
                func.sum(case((and_(qr.status == "answered", qr.cached), 1), else_=0)).label("cached"),
                func.sum(case((qr.status == "failed", 1), else_=0)).label("provider_failed"),
                func.sum(case((it.status == "failed", 1), else_=0)).label("items_failed"),
                func.count(oe.id).label("evaluated"),
                func.sum(case((oe.mentioned, 1), else_=0)).label("mentioned"),
                func.sum(case((and_(oe.mentioned, oe.rank > 0), oe.rank), else_=0)).label("rank_sum"),
                func.sum(case((and_(oe.mentioned, oe.rank > 0), 1), else_=0)).label("ranked"),
                func.sum(func.coalesce(oe.mention_count, 0)).label("org_mentions"),
            )
            .select_from(
                m.question_runs.join(m.run_items, it.id == qr.item_id).outerjoin(m.org_evals, oe.item_id == qr.item_id)
            )
            .where(qr.run_id == run_id)
            .group_by(qr.model, qr.location)
        )

        async def read(conn: AsyncConnection) -> Any:
            return [dict(r) for r in (await conn.execute(stmt)).mappings()]

        return await self.store.read(read, "group_stats")

    async def cost_by_group(self, run_id: str) -> list[tuple[str, str, float]]:
        """(model, location, USD): Σ of the ledger rows of each group's items (run-level rows excluded)."""
        qr, led = m.question_runs.c, m.cost_ledger.c
        stmt = (
            select(qr.model, qr.location, func.coalesce(func.sum(led.usd), 0))
            .select_from(m.cost_ledger.join(m.question_runs, qr.item_id == led.item_id))
            .where(led.run_id == run_id)
            .group_by(qr.model, qr.location)
        )

        async def read(conn: AsyncConnection) -> Any:
            return [(r[0], r[1], float(r[2])) for r in await conn.execute(stmt)]

        return await self.store.read(read, "cost_by_group")

    async def sentiment_counts(self, run_id: str) -> list[tuple[str, str, str, int]]:
        """(model, location, sentiment, answers naming the org with that sentiment)."""
        qr, oe = m.question_runs.c, m.org_evals.c
        stmt = (
            select(qr.model, qr.location, oe.sentiment, func.count())
            .select_from(m.org_evals.join(m.question_runs, qr.item_id == oe.item_id))
            .where(oe.run_id == run_id, oe.mentioned)
            .group_by(qr.model, qr.location, oe.sentiment)
        )

        async def read(conn: AsyncConnection) -> Any:
            return [(r[0], r[1], r[2], int(r[3])) for r in await conn.execute(stmt)]

        return await self.store.read(read, "sentiment_counts")

    async def competitor_stats(self, run_id: str) -> list[tuple[str, str, str, str, int, int, int]]:
        """(model, location, name as found, canonical name (the name when not merged), answers naming it,
        Σ mentions, Σ rank)."""
        qr, oc = m.question_runs.c, m.org_competitors.c
        stmt = (
            select(qr.model, qr.location, oc.name, oc.canonical, func.count(), func.sum(oc.mention_count),
                   func.sum(oc.rank))
            .select_from(m.org_competitors.join(m.question_runs, qr.item_id == oc.item_id))
            .where(oc.run_id == run_id)
            .group_by(qr.model, qr.location, oc.name, oc.canonical)
        )

        async def read(conn: AsyncConnection) -> Any:
            return [(r[0], r[1], r[2], r[3] or r[2], int(r[4]), int(r[5] or 0), int(r[6] or 0))
                    for r in await conn.execute(stmt)]

        return await self.store.read(read, "competitor_stats")

    async def citation_stats(self, run_id: str) -> list[tuple[str, str, str, int, int, int]]:
        """(model, location, cited domain, citations, owned citations, competitor citations) — owned and competitor
        as the extraction service flagged each citation."""
        qr, ci = m.question_runs.c, m.org_citations.c
        stmt = (
            select(qr.model, qr.location, ci.domain, func.count(),
                   func.sum(case((ci.owned, 1), else_=0)), func.sum(case((ci.competitor, 1), else_=0)))
            .select_from(m.org_citations.join(m.question_runs, qr.item_id == ci.item_id))
            .where(ci.run_id == run_id)
            .group_by(qr.model, qr.location, ci.domain)
        )

        async def read(conn: AsyncConnection) -> Any:
            return [(r[0], r[1], r[2], int(r[3]), int(r[4] or 0), int(r[5] or 0)) for r in await conn.execute(stmt)]

        return await self.store.read(read, "citation_stats")

    async def failure_stats(self, run_id: str) -> list[tuple[str, str, int, str]]:
        """Failed question runs grouped by reason: (kind, code, count, an example message). ``kind`` is
        ``provider`` (the assistant/provider failed: ``code`` = the provider's error code or gRPC status) or
        ``pipeline`` (answered, but a later stage failed: ``code`` = the stage)."""
        qr, it = m.question_runs.c, m.run_items.c

        async def read(conn: AsyncConnection) -> Any:
            prov = await conn.execute(
                select(qr.error_code, func.count(), func.min(qr.error))
                .select_from(m.question_runs.join(m.run_items, it.id == qr.item_id))
                .where(qr.run_id == run_id, it.status == "failed", qr.status == "failed")
                .group_by(qr.error_code)
            )
            out = [("provider", r[0] or "UNKNOWN", int(r[1]), r[2] or "") for r in prov]
            other = await conn.execute(
                select(it.last_error)
                .select_from(m.question_runs.join(m.run_items, it.id == qr.item_id))
                .where(qr.run_id == run_id, it.status == "failed", qr.status != "failed")
            )
            grouped: dict[str, list[str]] = {}
            for (err,) in other:
                stage = (err or "unknown").split(":", 1)[0].strip() or "unknown"
                grouped.setdefault(stage, []).append(err or "")
            return out, grouped

        out, grouped = await self.store.read(read, "failure_stats")
        out += [("pipeline", stage, len(errs), errs[0]) for stage, errs in grouped.items()]
        return sorted(out, key=lambda f: (-f[2], f[0], f[1]))

    async def question_run_rows(self, run_id: str, *, after_seq: int = 0, limit: int = 500) -> list[dict[str, Any]]:
        """Question runs of the run in item order with their evaluation, for exports: one dict per question run."""
        qr, q, it, oe = m.question_runs.c, m.questions.c, m.run_items.c, m.org_evals.c
        stmt = (
            select(
                it.seq, it.id.label("item_id"), it.status.label("item_status"), it.attempts, it.last_error,
                q.seq.label("question_seq"), q.text.label("question"), qr.model, qr.location,
                qr.status.label("answer_status"), qr.provider, qr.snapshot_id, qr.error, qr.error_code, qr.cost_usd,
                qr.input_tokens, qr.output_tokens, qr.web_search_calls, qr.cached,
                oe.mentioned, oe.mention_count, oe.rank, oe.sentiment, oe.evidence, oe.owned_citation_count,
            )
            .select_from(
                m.question_runs.join(m.run_items, it.id == qr.item_id).join(m.questions, q.id == qr.question_id)
                .outerjoin(m.org_evals, oe.item_id == qr.item_id)
            )
            .where(qr.run_id == run_id, it.seq > after_seq)
            .order_by(it.seq)
            .limit(limit)
        )

        async def read(conn: AsyncConnection) -> Any:
            rows = [dict(r) for r in (await conn.execute(stmt)).mappings()]
            ids = [r["item_id"] for r in rows]
            comps: dict[str, list[str]] = {}
            cites: dict[str, int] = {}
            if ids:
                oc, ci = m.org_competitors.c, m.org_citations.c
                for iid, name, canon in await conn.execute(
                    select(oc.item_id, oc.name, oc.canonical).where(oc.item_id.in_(ids)).order_by(oc.item_id, oc.rank)
                ):
                    comps.setdefault(iid, []).append(canon or name)
                for iid, n in await conn.execute(
                    select(ci.item_id, func.count()).where(ci.item_id.in_(ids)).group_by(ci.item_id)
                ):
                    cites[iid] = int(n)
            return rows, comps, cites

        rows, comps, cites = await self.store.read(read, "question_run_rows")
        for r in rows:
            r["competitors"] = comps.get(r["item_id"], [])
            r["citations"] = cites.get(r["item_id"], 0)
        return rows


def _unique_by(rows: Iterable[Any], *, key: Any) -> list[Any]:
    seen: set[Any] = set()
    out = []
    for r in rows:
        k = key(r)
        if k not in seen:
            seen.add(k)
            out.append(r)
    return out


__all__ = [
    "Answer",
    "BatchRow",
    "Bill",
    "EvalStore",
    "Evaluation",
    "MatrixReport",
    "OrgRow",
    "QuestionRunState",
    "ReuseReport",
    "item_key",
    "item_label",
    "org_key",
]
