from vantage.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RouteRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class RouteResponse(_message.Message):
    __slots__ = ("provider", "supports_batching", "max_batch_size", "supports_web_search", "supports_locations", "rule", "provider_name")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    SUPPORTS_BATCHING_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    SUPPORTS_WEB_SEARCH_FIELD_NUMBER: _ClassVar[int]
    SUPPORTS_LOCATIONS_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_NAME_FIELD_NUMBER: _ClassVar[int]
    provider: str
    supports_batching: bool
    max_batch_size: int
    supports_web_search: bool
    supports_locations: bool
    rule: str
    provider_name: str
    def __init__(self, provider: _Optional[str] = ..., supports_batching: _Optional[bool] = ..., max_batch_size: _Optional[int] = ..., supports_web_search: _Optional[bool] = ..., supports_locations: _Optional[bool] = ..., rule: _Optional[str] = ..., provider_name: _Optional[str] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RoutingRule(_message.Message):
    __slots__ = ("match", "pattern", "provider", "description")
    MATCH_FIELD_NUMBER: _ClassVar[int]
    PATTERN_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    match: str
    pattern: str
    provider: str
    description: str
    def __init__(self, match: _Optional[str] = ..., pattern: _Optional[str] = ..., provider: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class ProviderInfo(_message.Message):
    __slots__ = ("provider", "provider_name", "supports_batching", "max_batch_size", "supports_web_search", "supports_locations", "available", "current_limit", "max_limit", "in_flight", "circuit_state")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_NAME_FIELD_NUMBER: _ClassVar[int]
    SUPPORTS_BATCHING_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    SUPPORTS_WEB_SEARCH_FIELD_NUMBER: _ClassVar[int]
    SUPPORTS_LOCATIONS_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    CURRENT_LIMIT_FIELD_NUMBER: _ClassVar[int]
    MAX_LIMIT_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    CIRCUIT_STATE_FIELD_NUMBER: _ClassVar[int]
    provider: str
    provider_name: str
    supports_batching: bool
    max_batch_size: int
    supports_web_search: bool
    supports_locations: bool
    available: bool
    current_limit: int
    max_limit: int
    in_flight: int
    circuit_state: str
    def __init__(self, provider: _Optional[str] = ..., provider_name: _Optional[str] = ..., supports_batching: _Optional[bool] = ..., max_batch_size: _Optional[int] = ..., supports_web_search: _Optional[bool] = ..., supports_locations: _Optional[bool] = ..., available: _Optional[bool] = ..., current_limit: _Optional[int] = ..., max_limit: _Optional[int] = ..., in_flight: _Optional[int] = ..., circuit_state: _Optional[str] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("rules", "providers", "models")
    RULES_FIELD_NUMBER: _ClassVar[int]
    PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    rules: _containers.RepeatedCompositeFieldContainer[RoutingRule]
    providers: _containers.RepeatedCompositeFieldContainer[ProviderInfo]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    def __init__(self, rules: _Optional[_Iterable[_Union[RoutingRule, _Mapping]]] = ..., providers: _Optional[_Iterable[_Union[ProviderInfo, _Mapping]]] = ..., models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("model", "provider", "aliases", "input_usd_per_million_tokens", "output_usd_per_million_tokens", "web_search_usd_per_call", "status", "shutdown_date", "successor", "source_url", "checked_on", "note")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    INPUT_USD_PER_MILLION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_USD_PER_MILLION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    WEB_SEARCH_USD_PER_CALL_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SHUTDOWN_DATE_FIELD_NUMBER: _ClassVar[int]
    SUCCESSOR_FIELD_NUMBER: _ClassVar[int]
    SOURCE_URL_FIELD_NUMBER: _ClassVar[int]
    CHECKED_ON_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    model: str
    provider: str
    aliases: _containers.RepeatedScalarFieldContainer[str]
    input_usd_per_million_tokens: float
    output_usd_per_million_tokens: float
    web_search_usd_per_call: float
    status: str
    shutdown_date: str
    successor: str
    source_url: str
    checked_on: str
    note: str
    def __init__(self, model: _Optional[str] = ..., provider: _Optional[str] = ..., aliases: _Optional[_Iterable[str]] = ..., input_usd_per_million_tokens: _Optional[float] = ..., output_usd_per_million_tokens: _Optional[float] = ..., web_search_usd_per_call: _Optional[float] = ..., status: _Optional[str] = ..., shutdown_date: _Optional[str] = ..., successor: _Optional[str] = ..., source_url: _Optional[str] = ..., checked_on: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class Message(_message.Message):
    __slots__ = ("role", "content")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    role: str
    content: str
    def __init__(self, role: _Optional[str] = ..., content: _Optional[str] = ...) -> None: ...

class CompleteRequest(_message.Message):
    __slots__ = ("model", "messages", "json_schema", "location", "web_search", "max_output_tokens", "schema_name", "no_cache", "idempotency_key", "cache_scope")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    JSON_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    WEB_SEARCH_FIELD_NUMBER: _ClassVar[int]
    MAX_OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_NAME_FIELD_NUMBER: _ClassVar[int]
    NO_CACHE_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    CACHE_SCOPE_FIELD_NUMBER: _ClassVar[int]
    model: str
    messages: _containers.RepeatedCompositeFieldContainer[Message]
    json_schema: str
    location: str
    web_search: bool
    max_output_tokens: int
    schema_name: str
    no_cache: bool
    idempotency_key: str
    cache_scope: str
    def __init__(self, model: _Optional[str] = ..., messages: _Optional[_Iterable[_Union[Message, _Mapping]]] = ..., json_schema: _Optional[str] = ..., location: _Optional[str] = ..., web_search: _Optional[bool] = ..., max_output_tokens: _Optional[int] = ..., schema_name: _Optional[str] = ..., no_cache: _Optional[bool] = ..., idempotency_key: _Optional[str] = ..., cache_scope: _Optional[str] = ...) -> None: ...

class CompleteResponse(_message.Message):
    __slots__ = ("text", "json", "citations", "usage", "cost_usd", "provider", "model", "cached", "finish_reason", "search_queries", "markdown", "snapshot_id", "web_search_calls", "web_search_triggered", "links_attached", "cost_estimated", "model_warning")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    CITATIONS_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    SEARCH_QUERIES_FIELD_NUMBER: _ClassVar[int]
    MARKDOWN_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_ID_FIELD_NUMBER: _ClassVar[int]
    WEB_SEARCH_CALLS_FIELD_NUMBER: _ClassVar[int]
    WEB_SEARCH_TRIGGERED_FIELD_NUMBER: _ClassVar[int]
    LINKS_ATTACHED_FIELD_NUMBER: _ClassVar[int]
    COST_ESTIMATED_FIELD_NUMBER: _ClassVar[int]
    MODEL_WARNING_FIELD_NUMBER: _ClassVar[int]
    text: str
    json: str
    citations: _containers.RepeatedCompositeFieldContainer[_common_pb2.Citation]
    usage: _common_pb2.Usage
    cost_usd: float
    provider: str
    model: str
    cached: bool
    finish_reason: str
    search_queries: _containers.RepeatedScalarFieldContainer[str]
    markdown: str
    snapshot_id: str
    web_search_calls: int
    web_search_triggered: bool
    links_attached: _containers.RepeatedCompositeFieldContainer[_common_pb2.Citation]
    cost_estimated: bool
    model_warning: str
    def __init__(self, text: _Optional[str] = ..., json: _Optional[str] = ..., citations: _Optional[_Iterable[_Union[_common_pb2.Citation, _Mapping]]] = ..., usage: _Optional[_Union[_common_pb2.Usage, _Mapping]] = ..., cost_usd: _Optional[float] = ..., provider: _Optional[str] = ..., model: _Optional[str] = ..., cached: _Optional[bool] = ..., finish_reason: _Optional[str] = ..., search_queries: _Optional[_Iterable[str]] = ..., markdown: _Optional[str] = ..., snapshot_id: _Optional[str] = ..., web_search_calls: _Optional[int] = ..., web_search_triggered: _Optional[bool] = ..., links_attached: _Optional[_Iterable[_Union[_common_pb2.Citation, _Mapping]]] = ..., cost_estimated: _Optional[bool] = ..., model_warning: _Optional[str] = ...) -> None: ...

class StreamItem(_message.Message):
    __slots__ = ("id", "request")
    ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    id: str
    request: CompleteRequest
    def __init__(self, id: _Optional[str] = ..., request: _Optional[_Union[CompleteRequest, _Mapping]] = ...) -> None: ...

class ResumeBatch(_message.Message):
    __slots__ = ("snapshot_id", "model", "location", "member_ids")
    SNAPSHOT_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    MEMBER_IDS_FIELD_NUMBER: _ClassVar[int]
    snapshot_id: str
    model: str
    location: str
    member_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, snapshot_id: _Optional[str] = ..., model: _Optional[str] = ..., location: _Optional[str] = ..., member_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class CompleteStreamRequest(_message.Message):
    __slots__ = ("item", "resume")
    ITEM_FIELD_NUMBER: _ClassVar[int]
    RESUME_FIELD_NUMBER: _ClassVar[int]
    item: StreamItem
    resume: ResumeBatch
    def __init__(self, item: _Optional[_Union[StreamItem, _Mapping]] = ..., resume: _Optional[_Union[ResumeBatch, _Mapping]] = ...) -> None: ...

class BatchSubmitted(_message.Message):
    __slots__ = ("snapshot_id", "provider", "model", "location", "member_ids")
    SNAPSHOT_ID_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    MEMBER_IDS_FIELD_NUMBER: _ClassVar[int]
    snapshot_id: str
    provider: str
    model: str
    location: str
    member_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, snapshot_id: _Optional[str] = ..., provider: _Optional[str] = ..., model: _Optional[str] = ..., location: _Optional[str] = ..., member_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ItemResult(_message.Message):
    __slots__ = ("id", "response", "error")
    ID_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    id: str
    response: CompleteResponse
    error: _common_pb2.ItemError
    def __init__(self, id: _Optional[str] = ..., response: _Optional[_Union[CompleteResponse, _Mapping]] = ..., error: _Optional[_Union[_common_pb2.ItemError, _Mapping]] = ...) -> None: ...

class CompleteStreamResponse(_message.Message):
    __slots__ = ("batch_submitted", "result")
    BATCH_SUBMITTED_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    batch_submitted: BatchSubmitted
    result: ItemResult
    def __init__(self, batch_submitted: _Optional[_Union[BatchSubmitted, _Mapping]] = ..., result: _Optional[_Union[ItemResult, _Mapping]] = ...) -> None: ...

class BatchItem(_message.Message):
    __slots__ = ("id", "request", "input_json")
    ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    INPUT_JSON_FIELD_NUMBER: _ClassVar[int]
    id: str
    request: CompleteRequest
    input_json: str
    def __init__(self, id: _Optional[str] = ..., request: _Optional[_Union[CompleteRequest, _Mapping]] = ..., input_json: _Optional[str] = ...) -> None: ...

class CompleteBatchRequest(_message.Message):
    __slots__ = ("model", "items", "instruction", "item_json_schema", "max_items_per_call", "location", "no_cache")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    INSTRUCTION_FIELD_NUMBER: _ClassVar[int]
    ITEM_JSON_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    MAX_ITEMS_PER_CALL_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    NO_CACHE_FIELD_NUMBER: _ClassVar[int]
    model: str
    items: _containers.RepeatedCompositeFieldContainer[BatchItem]
    instruction: str
    item_json_schema: str
    max_items_per_call: int
    location: str
    no_cache: bool
    def __init__(self, model: _Optional[str] = ..., items: _Optional[_Iterable[_Union[BatchItem, _Mapping]]] = ..., instruction: _Optional[str] = ..., item_json_schema: _Optional[str] = ..., max_items_per_call: _Optional[int] = ..., location: _Optional[str] = ..., no_cache: _Optional[bool] = ...) -> None: ...

class CompleteBatchResponse(_message.Message):
    __slots__ = ("results", "llm_calls", "cache_hits", "cost_usd", "usage", "cost_estimated")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    LLM_CALLS_FIELD_NUMBER: _ClassVar[int]
    CACHE_HITS_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    COST_ESTIMATED_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ItemResult]
    llm_calls: int
    cache_hits: int
    cost_usd: float
    usage: _common_pb2.Usage
    cost_estimated: bool
    def __init__(self, results: _Optional[_Iterable[_Union[ItemResult, _Mapping]]] = ..., llm_calls: _Optional[int] = ..., cache_hits: _Optional[int] = ..., cost_usd: _Optional[float] = ..., usage: _Optional[_Union[_common_pb2.Usage, _Mapping]] = ..., cost_estimated: _Optional[bool] = ...) -> None: ...

class CancelBatchRequest(_message.Message):
    __slots__ = ("snapshot_id", "provider")
    SNAPSHOT_ID_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    snapshot_id: str
    provider: str
    def __init__(self, snapshot_id: _Optional[str] = ..., provider: _Optional[str] = ...) -> None: ...

class CancelBatchResponse(_message.Message):
    __slots__ = ("cancelled",)
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    cancelled: bool
    def __init__(self, cancelled: _Optional[bool] = ...) -> None: ...
