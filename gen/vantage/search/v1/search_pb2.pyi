from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SearchRequest(_message.Message):
    __slots__ = ("query", "max_results", "search_depth", "include_raw_content", "min_score", "include_domains", "exclude_domains", "no_cache", "context_char_budget", "idempotency_key")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    MAX_RESULTS_FIELD_NUMBER: _ClassVar[int]
    SEARCH_DEPTH_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_RAW_CONTENT_FIELD_NUMBER: _ClassVar[int]
    MIN_SCORE_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_DOMAINS_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_DOMAINS_FIELD_NUMBER: _ClassVar[int]
    NO_CACHE_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_CHAR_BUDGET_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    query: str
    max_results: int
    search_depth: str
    include_raw_content: bool
    min_score: float
    include_domains: _containers.RepeatedScalarFieldContainer[str]
    exclude_domains: _containers.RepeatedScalarFieldContainer[str]
    no_cache: bool
    context_char_budget: int
    idempotency_key: str
    def __init__(self, query: _Optional[str] = ..., max_results: _Optional[int] = ..., search_depth: _Optional[str] = ..., include_raw_content: _Optional[bool] = ..., min_score: _Optional[float] = ..., include_domains: _Optional[_Iterable[str]] = ..., exclude_domains: _Optional[_Iterable[str]] = ..., no_cache: _Optional[bool] = ..., context_char_budget: _Optional[int] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class SearchCompanyRequest(_message.Message):
    __slots__ = ("company", "domain", "search_depth", "min_score", "max_results", "context_char_budget", "no_cache", "include_raw_content", "idempotency_key")
    COMPANY_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    SEARCH_DEPTH_FIELD_NUMBER: _ClassVar[int]
    MIN_SCORE_FIELD_NUMBER: _ClassVar[int]
    MAX_RESULTS_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_CHAR_BUDGET_FIELD_NUMBER: _ClassVar[int]
    NO_CACHE_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_RAW_CONTENT_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    company: str
    domain: str
    search_depth: str
    min_score: float
    max_results: int
    context_char_budget: int
    no_cache: bool
    include_raw_content: bool
    idempotency_key: str
    def __init__(self, company: _Optional[str] = ..., domain: _Optional[str] = ..., search_depth: _Optional[str] = ..., min_score: _Optional[float] = ..., max_results: _Optional[int] = ..., context_char_budget: _Optional[int] = ..., no_cache: _Optional[bool] = ..., include_raw_content: _Optional[bool] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class SearchResult(_message.Message):
    __slots__ = ("title", "url", "content", "raw_content", "score")
    TITLE_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    RAW_CONTENT_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    title: str
    url: str
    content: str
    raw_content: str
    score: float
    def __init__(self, title: _Optional[str] = ..., url: _Optional[str] = ..., content: _Optional[str] = ..., raw_content: _Optional[str] = ..., score: _Optional[float] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("results", "returned_count", "filtered_out_count", "credits", "cost_usd", "cached", "query", "llm_context", "context_truncated", "request_id", "credits_saved")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    RETURNED_COUNT_FIELD_NUMBER: _ClassVar[int]
    FILTERED_OUT_COUNT_FIELD_NUMBER: _ClassVar[int]
    CREDITS_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    LLM_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CREDITS_SAVED_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[SearchResult]
    returned_count: int
    filtered_out_count: int
    credits: int
    cost_usd: float
    cached: bool
    query: str
    llm_context: str
    context_truncated: bool
    request_id: str
    credits_saved: int
    def __init__(self, results: _Optional[_Iterable[_Union[SearchResult, _Mapping]]] = ..., returned_count: _Optional[int] = ..., filtered_out_count: _Optional[int] = ..., credits: _Optional[int] = ..., cost_usd: _Optional[float] = ..., cached: _Optional[bool] = ..., query: _Optional[str] = ..., llm_context: _Optional[str] = ..., context_truncated: _Optional[bool] = ..., request_id: _Optional[str] = ..., credits_saved: _Optional[int] = ...) -> None: ...
