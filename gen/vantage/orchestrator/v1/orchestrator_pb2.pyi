import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from vantage.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RunKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RUN_KIND_UNSPECIFIED: _ClassVar[RunKind]
    RESEARCH: _ClassVar[RunKind]
    ORG_EVAL: _ClassVar[RunKind]
RUN_KIND_UNSPECIFIED: RunKind
RESEARCH: RunKind
ORG_EVAL: RunKind

class Company(_message.Message):
    __slots__ = ("company", "domain")
    COMPANY_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    company: str
    domain: str
    def __init__(self, company: _Optional[str] = ..., domain: _Optional[str] = ...) -> None: ...

class ResearchInput(_message.Message):
    __slots__ = ("companies",)
    COMPANIES_FIELD_NUMBER: _ClassVar[int]
    companies: _containers.RepeatedCompositeFieldContainer[Company]
    def __init__(self, companies: _Optional[_Iterable[_Union[Company, _Mapping]]] = ...) -> None: ...

class ResearchOptions(_message.Message):
    __slots__ = ("model", "search_depth", "min_score", "context_char_budget")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SEARCH_DEPTH_FIELD_NUMBER: _ClassVar[int]
    MIN_SCORE_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_CHAR_BUDGET_FIELD_NUMBER: _ClassVar[int]
    model: str
    search_depth: str
    min_score: float
    context_char_budget: int
    def __init__(self, model: _Optional[str] = ..., search_depth: _Optional[str] = ..., min_score: _Optional[float] = ..., context_char_budget: _Optional[int] = ...) -> None: ...

class OrgEvalInput(_message.Message):
    __slots__ = ("org_name", "org_domain", "questions", "models", "locations", "known_competitors", "name_variations")
    ORG_NAME_FIELD_NUMBER: _ClassVar[int]
    ORG_DOMAIN_FIELD_NUMBER: _ClassVar[int]
    QUESTIONS_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    LOCATIONS_FIELD_NUMBER: _ClassVar[int]
    KNOWN_COMPETITORS_FIELD_NUMBER: _ClassVar[int]
    NAME_VARIATIONS_FIELD_NUMBER: _ClassVar[int]
    org_name: str
    org_domain: str
    questions: _containers.RepeatedScalarFieldContainer[str]
    models: _containers.RepeatedScalarFieldContainer[str]
    locations: _containers.RepeatedScalarFieldContainer[str]
    known_competitors: _containers.RepeatedScalarFieldContainer[str]
    name_variations: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, org_name: _Optional[str] = ..., org_domain: _Optional[str] = ..., questions: _Optional[_Iterable[str]] = ..., models: _Optional[_Iterable[str]] = ..., locations: _Optional[_Iterable[str]] = ..., known_competitors: _Optional[_Iterable[str]] = ..., name_variations: _Optional[_Iterable[str]] = ...) -> None: ...

class StartRunRequest(_message.Message):
    __slots__ = ("kind", "input_path", "input_csv", "research", "org_eval", "upload_id", "questions_text", "research_options", "org_eval_options", "name", "detach", "no_cache", "samples", "reuse_answers")
    KIND_FIELD_NUMBER: _ClassVar[int]
    INPUT_PATH_FIELD_NUMBER: _ClassVar[int]
    INPUT_CSV_FIELD_NUMBER: _ClassVar[int]
    RESEARCH_FIELD_NUMBER: _ClassVar[int]
    ORG_EVAL_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    QUESTIONS_TEXT_FIELD_NUMBER: _ClassVar[int]
    RESEARCH_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    ORG_EVAL_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DETACH_FIELD_NUMBER: _ClassVar[int]
    NO_CACHE_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    REUSE_ANSWERS_FIELD_NUMBER: _ClassVar[int]
    kind: RunKind
    input_path: str
    input_csv: str
    research: ResearchInput
    org_eval: OrgEvalInput
    upload_id: str
    questions_text: str
    research_options: ResearchOptions
    org_eval_options: OrgEvalInput
    name: str
    detach: bool
    no_cache: bool
    samples: int
    reuse_answers: str
    def __init__(self, kind: _Optional[_Union[RunKind, str]] = ..., input_path: _Optional[str] = ..., input_csv: _Optional[str] = ..., research: _Optional[_Union[ResearchInput, _Mapping]] = ..., org_eval: _Optional[_Union[OrgEvalInput, _Mapping]] = ..., upload_id: _Optional[str] = ..., questions_text: _Optional[str] = ..., research_options: _Optional[_Union[ResearchOptions, _Mapping]] = ..., org_eval_options: _Optional[_Union[OrgEvalInput, _Mapping]] = ..., name: _Optional[str] = ..., detach: _Optional[bool] = ..., no_cache: _Optional[bool] = ..., samples: _Optional[int] = ..., reuse_answers: _Optional[str] = ...) -> None: ...

class RunCounts(_message.Message):
    __slots__ = ("total", "pending", "running", "done", "failed", "skipped")
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    total: int
    pending: int
    running: int
    done: int
    failed: int
    skipped: int
    def __init__(self, total: _Optional[int] = ..., pending: _Optional[int] = ..., running: _Optional[int] = ..., done: _Optional[int] = ..., failed: _Optional[int] = ..., skipped: _Optional[int] = ...) -> None: ...

class Run(_message.Message):
    __slots__ = ("run_id", "kind", "status", "name", "counts", "cost_usd", "credits", "usage", "created_at", "started_at", "finished_at", "error", "input_incomplete")
    class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATUS_UNSPECIFIED: _ClassVar[Run.Status]
        PENDING: _ClassVar[Run.Status]
        RUNNING: _ClassVar[Run.Status]
        COMPLETED: _ClassVar[Run.Status]
        CANCELLED: _ClassVar[Run.Status]
        FAILED: _ClassVar[Run.Status]
    STATUS_UNSPECIFIED: Run.Status
    PENDING: Run.Status
    RUNNING: Run.Status
    COMPLETED: Run.Status
    CANCELLED: Run.Status
    FAILED: Run.Status
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    CREDITS_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    INPUT_INCOMPLETE_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    kind: RunKind
    status: Run.Status
    name: str
    counts: RunCounts
    cost_usd: float
    credits: int
    usage: _common_pb2.Usage
    created_at: _timestamp_pb2.Timestamp
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    error: str
    input_incomplete: bool
    def __init__(self, run_id: _Optional[str] = ..., kind: _Optional[_Union[RunKind, str]] = ..., status: _Optional[_Union[Run.Status, str]] = ..., name: _Optional[str] = ..., counts: _Optional[_Union[RunCounts, _Mapping]] = ..., cost_usd: _Optional[float] = ..., credits: _Optional[int] = ..., usage: _Optional[_Union[_common_pb2.Usage, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., error: _Optional[str] = ..., input_incomplete: _Optional[bool] = ...) -> None: ...

class UploadInputRequest(_message.Message):
    __slots__ = ("data", "filename")
    DATA_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    filename: str
    def __init__(self, data: _Optional[bytes] = ..., filename: _Optional[str] = ...) -> None: ...

class UploadInputResponse(_message.Message):
    __slots__ = ("upload_id", "size_bytes", "sha256", "expires_at")
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    upload_id: str
    size_bytes: int
    sha256: str
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, upload_id: _Optional[str] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetRunRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class WatchRunRequest(_message.Message):
    __slots__ = ("run_id", "after_sequence")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    after_sequence: int
    def __init__(self, run_id: _Optional[str] = ..., after_sequence: _Optional[int] = ...) -> None: ...

class RunEvent(_message.Message):
    __slots__ = ("sequence", "type", "run_id", "item_id", "item_key", "message", "run", "time")
    class Type(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        TYPE_UNSPECIFIED: _ClassVar[RunEvent.Type]
        RUN_STARTED: _ClassVar[RunEvent.Type]
        ITEM_STARTED: _ClassVar[RunEvent.Type]
        ITEM_DONE: _ClassVar[RunEvent.Type]
        ITEM_FAILED: _ClassVar[RunEvent.Type]
        RUN_FINISHED: _ClassVar[RunEvent.Type]
        RUN_CANCELLED: _ClassVar[RunEvent.Type]
        PROGRESS: _ClassVar[RunEvent.Type]
    TYPE_UNSPECIFIED: RunEvent.Type
    RUN_STARTED: RunEvent.Type
    ITEM_STARTED: RunEvent.Type
    ITEM_DONE: RunEvent.Type
    ITEM_FAILED: RunEvent.Type
    RUN_FINISHED: RunEvent.Type
    RUN_CANCELLED: RunEvent.Type
    PROGRESS: RunEvent.Type
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_KEY_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RUN_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    type: RunEvent.Type
    run_id: str
    item_id: str
    item_key: str
    message: str
    run: Run
    time: _timestamp_pb2.Timestamp
    def __init__(self, sequence: _Optional[int] = ..., type: _Optional[_Union[RunEvent.Type, str]] = ..., run_id: _Optional[str] = ..., item_id: _Optional[str] = ..., item_key: _Optional[str] = ..., message: _Optional[str] = ..., run: _Optional[_Union[Run, _Mapping]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CancelRunRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class ResumeRunRequest(_message.Message):
    __slots__ = ("run_id", "detach")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    DETACH_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    detach: bool
    def __init__(self, run_id: _Optional[str] = ..., detach: _Optional[bool] = ...) -> None: ...

class RetryFailedRequest(_message.Message):
    __slots__ = ("run_id", "detach")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    DETACH_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    detach: bool
    def __init__(self, run_id: _Optional[str] = ..., detach: _Optional[bool] = ...) -> None: ...

class ListRunsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "status")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    status: Run.Status
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., status: _Optional[_Union[Run.Status, str]] = ...) -> None: ...

class ListRunsResponse(_message.Message):
    __slots__ = ("runs", "next_page_token")
    RUNS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[Run]
    next_page_token: str
    def __init__(self, runs: _Optional[_Iterable[_Union[Run, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListRunItemsRequest(_message.Message):
    __slots__ = ("run_id", "page_size", "page_token")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    page_size: int
    page_token: str
    def __init__(self, run_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ResearchResult(_message.Message):
    __slots__ = ("tier", "score", "category", "rationale", "evidence_urls", "results_kept", "results_returned", "tokens", "cost_usd")
    TIER_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    RATIONALE_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_URLS_FIELD_NUMBER: _ClassVar[int]
    RESULTS_KEPT_FIELD_NUMBER: _ClassVar[int]
    RESULTS_RETURNED_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    tier: _common_pb2.Tier
    score: int
    category: str
    rationale: str
    evidence_urls: _containers.RepeatedScalarFieldContainer[str]
    results_kept: int
    results_returned: int
    tokens: int
    cost_usd: float
    def __init__(self, tier: _Optional[_Union[_common_pb2.Tier, str]] = ..., score: _Optional[int] = ..., category: _Optional[str] = ..., rationale: _Optional[str] = ..., evidence_urls: _Optional[_Iterable[str]] = ..., results_kept: _Optional[int] = ..., results_returned: _Optional[int] = ..., tokens: _Optional[int] = ..., cost_usd: _Optional[float] = ...) -> None: ...

class QuestionRunResult(_message.Message):
    __slots__ = ("question", "model", "location", "provider", "snapshot_id", "mentioned", "rank", "mention_count", "sentiment", "competitors", "citations", "owned_citations", "error_code", "cost_usd")
    QUESTION_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_ID_FIELD_NUMBER: _ClassVar[int]
    MENTIONED_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    MENTION_COUNT_FIELD_NUMBER: _ClassVar[int]
    SENTIMENT_FIELD_NUMBER: _ClassVar[int]
    COMPETITORS_FIELD_NUMBER: _ClassVar[int]
    CITATIONS_FIELD_NUMBER: _ClassVar[int]
    OWNED_CITATIONS_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    question: str
    model: str
    location: str
    provider: str
    snapshot_id: str
    mentioned: bool
    rank: int
    mention_count: int
    sentiment: str
    competitors: _containers.RepeatedScalarFieldContainer[str]
    citations: int
    owned_citations: int
    error_code: str
    cost_usd: float
    def __init__(self, question: _Optional[str] = ..., model: _Optional[str] = ..., location: _Optional[str] = ..., provider: _Optional[str] = ..., snapshot_id: _Optional[str] = ..., mentioned: _Optional[bool] = ..., rank: _Optional[int] = ..., mention_count: _Optional[int] = ..., sentiment: _Optional[str] = ..., competitors: _Optional[_Iterable[str]] = ..., citations: _Optional[int] = ..., owned_citations: _Optional[int] = ..., error_code: _Optional[str] = ..., cost_usd: _Optional[float] = ...) -> None: ...

class RunItem(_message.Message):
    __slots__ = ("item_id", "key", "status", "attempts", "error", "research", "domain", "question_run")
    class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATUS_UNSPECIFIED: _ClassVar[RunItem.Status]
        PENDING: _ClassVar[RunItem.Status]
        RUNNING: _ClassVar[RunItem.Status]
        DONE: _ClassVar[RunItem.Status]
        FAILED: _ClassVar[RunItem.Status]
        SKIPPED: _ClassVar[RunItem.Status]
    STATUS_UNSPECIFIED: RunItem.Status
    PENDING: RunItem.Status
    RUNNING: RunItem.Status
    DONE: RunItem.Status
    FAILED: RunItem.Status
    SKIPPED: RunItem.Status
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    RESEARCH_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    QUESTION_RUN_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    key: str
    status: RunItem.Status
    attempts: int
    error: str
    research: ResearchResult
    domain: str
    question_run: QuestionRunResult
    def __init__(self, item_id: _Optional[str] = ..., key: _Optional[str] = ..., status: _Optional[_Union[RunItem.Status, str]] = ..., attempts: _Optional[int] = ..., error: _Optional[str] = ..., research: _Optional[_Union[ResearchResult, _Mapping]] = ..., domain: _Optional[str] = ..., question_run: _Optional[_Union[QuestionRunResult, _Mapping]] = ...) -> None: ...

class ListRunItemsResponse(_message.Message):
    __slots__ = ("items", "next_page_token")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[RunItem]
    next_page_token: str
    def __init__(self, items: _Optional[_Iterable[_Union[RunItem, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DiffRunsRequest(_message.Message):
    __slots__ = ("run_a", "run_b", "seed", "resamples")
    RUN_A_FIELD_NUMBER: _ClassVar[int]
    RUN_B_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    RESAMPLES_FIELD_NUMBER: _ClassVar[int]
    run_a: str
    run_b: str
    seed: int
    resamples: int
    def __init__(self, run_a: _Optional[str] = ..., run_b: _Optional[str] = ..., seed: _Optional[int] = ..., resamples: _Optional[int] = ...) -> None: ...

class DiffEstimate(_message.Message):
    __slots__ = ("value", "ci_low", "ci_high", "n", "method")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    CI_LOW_FIELD_NUMBER: _ClassVar[int]
    CI_HIGH_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    value: float
    ci_low: float
    ci_high: float
    n: int
    method: str
    def __init__(self, value: _Optional[float] = ..., ci_low: _Optional[float] = ..., ci_high: _Optional[float] = ..., n: _Optional[int] = ..., method: _Optional[str] = ...) -> None: ...

class DiffFigure(_message.Message):
    __slots__ = ("name", "a", "b", "delta", "verdict", "needed_n", "unit", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    A_FIELD_NUMBER: _ClassVar[int]
    B_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    NEEDED_N_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    a: DiffEstimate
    b: DiffEstimate
    delta: DiffEstimate
    verdict: str
    needed_n: int
    unit: str
    reason: str
    def __init__(self, name: _Optional[str] = ..., a: _Optional[_Union[DiffEstimate, _Mapping]] = ..., b: _Optional[_Union[DiffEstimate, _Mapping]] = ..., delta: _Optional[_Union[DiffEstimate, _Mapping]] = ..., verdict: _Optional[str] = ..., needed_n: _Optional[int] = ..., unit: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class DiffCell(_message.Message):
    __slots__ = ("model", "location", "questions", "model_version_changed", "figures")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    QUESTIONS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_CHANGED_FIELD_NUMBER: _ClassVar[int]
    FIGURES_FIELD_NUMBER: _ClassVar[int]
    model: str
    location: str
    questions: int
    model_version_changed: bool
    figures: _containers.RepeatedCompositeFieldContainer[DiffFigure]
    def __init__(self, model: _Optional[str] = ..., location: _Optional[str] = ..., questions: _Optional[int] = ..., model_version_changed: _Optional[bool] = ..., figures: _Optional[_Iterable[_Union[DiffFigure, _Mapping]]] = ...) -> None: ...

class CompanyDiff(_message.Message):
    __slots__ = ("company", "domain", "tier_a", "tier_b", "tier_change", "score_a", "score_b", "new_evidence_urls")
    COMPANY_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    TIER_A_FIELD_NUMBER: _ClassVar[int]
    TIER_B_FIELD_NUMBER: _ClassVar[int]
    TIER_CHANGE_FIELD_NUMBER: _ClassVar[int]
    SCORE_A_FIELD_NUMBER: _ClassVar[int]
    SCORE_B_FIELD_NUMBER: _ClassVar[int]
    NEW_EVIDENCE_URLS_FIELD_NUMBER: _ClassVar[int]
    company: str
    domain: str
    tier_a: str
    tier_b: str
    tier_change: str
    score_a: int
    score_b: int
    new_evidence_urls: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, company: _Optional[str] = ..., domain: _Optional[str] = ..., tier_a: _Optional[str] = ..., tier_b: _Optional[str] = ..., tier_change: _Optional[str] = ..., score_a: _Optional[int] = ..., score_b: _Optional[int] = ..., new_evidence_urls: _Optional[_Iterable[str]] = ...) -> None: ...

class DiffRunsResponse(_message.Message):
    __slots__ = ("kind", "run_a", "run_b", "basket", "only_a", "only_b", "resamples", "seed", "confidence", "model_versions_stored", "cells", "companies", "notes")
    KIND_FIELD_NUMBER: _ClassVar[int]
    RUN_A_FIELD_NUMBER: _ClassVar[int]
    RUN_B_FIELD_NUMBER: _ClassVar[int]
    BASKET_FIELD_NUMBER: _ClassVar[int]
    ONLY_A_FIELD_NUMBER: _ClassVar[int]
    ONLY_B_FIELD_NUMBER: _ClassVar[int]
    RESAMPLES_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSIONS_STORED_FIELD_NUMBER: _ClassVar[int]
    CELLS_FIELD_NUMBER: _ClassVar[int]
    COMPANIES_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    kind: RunKind
    run_a: str
    run_b: str
    basket: int
    only_a: int
    only_b: int
    resamples: int
    seed: int
    confidence: float
    model_versions_stored: bool
    cells: _containers.RepeatedCompositeFieldContainer[DiffCell]
    companies: _containers.RepeatedCompositeFieldContainer[CompanyDiff]
    notes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, kind: _Optional[_Union[RunKind, str]] = ..., run_a: _Optional[str] = ..., run_b: _Optional[str] = ..., basket: _Optional[int] = ..., only_a: _Optional[int] = ..., only_b: _Optional[int] = ..., resamples: _Optional[int] = ..., seed: _Optional[int] = ..., confidence: _Optional[float] = ..., model_versions_stored: _Optional[bool] = ..., cells: _Optional[_Iterable[_Union[DiffCell, _Mapping]]] = ..., companies: _Optional[_Iterable[_Union[CompanyDiff, _Mapping]]] = ..., notes: _Optional[_Iterable[str]] = ...) -> None: ...
