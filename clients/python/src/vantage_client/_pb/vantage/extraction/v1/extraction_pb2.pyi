from vantage_client._pb.vantage.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ParseClassificationRequest(_message.Message):
    __slots__ = ("classification_json", "search_result_urls", "company")
    CLASSIFICATION_JSON_FIELD_NUMBER: _ClassVar[int]
    SEARCH_RESULT_URLS_FIELD_NUMBER: _ClassVar[int]
    COMPANY_FIELD_NUMBER: _ClassVar[int]
    classification_json: str
    search_result_urls: _containers.RepeatedScalarFieldContainer[str]
    company: str
    def __init__(self, classification_json: _Optional[str] = ..., search_result_urls: _Optional[_Iterable[str]] = ..., company: _Optional[str] = ...) -> None: ...

class ParseClassificationResponse(_message.Message):
    __slots__ = ("tier", "score", "category", "rationale", "evidence_urls")
    TIER_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    RATIONALE_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_URLS_FIELD_NUMBER: _ClassVar[int]
    tier: _common_pb2.Tier
    score: int
    category: str
    rationale: str
    evidence_urls: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, tier: _Optional[_Union[_common_pb2.Tier, str]] = ..., score: _Optional[int] = ..., category: _Optional[str] = ..., rationale: _Optional[str] = ..., evidence_urls: _Optional[_Iterable[str]] = ...) -> None: ...

class GetClassificationSchemaRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetClassificationSchemaResponse(_message.Message):
    __slots__ = ("json_schema", "categories", "system_prompt")
    JSON_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_PROMPT_FIELD_NUMBER: _ClassVar[int]
    json_schema: str
    categories: _containers.RepeatedScalarFieldContainer[str]
    system_prompt: str
    def __init__(self, json_schema: _Optional[str] = ..., categories: _Optional[_Iterable[str]] = ..., system_prompt: _Optional[str] = ...) -> None: ...

class Org(_message.Message):
    __slots__ = ("name", "domain", "name_variations", "known_products")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    NAME_VARIATIONS_FIELD_NUMBER: _ClassVar[int]
    KNOWN_PRODUCTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    domain: str
    name_variations: _containers.RepeatedScalarFieldContainer[str]
    known_products: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., domain: _Optional[str] = ..., name_variations: _Optional[_Iterable[str]] = ..., known_products: _Optional[_Iterable[str]] = ...) -> None: ...

class ExtractRequest(_message.Message):
    __slots__ = ("answer_markdown", "org", "known_competitors", "provider_citations")
    ANSWER_MARKDOWN_FIELD_NUMBER: _ClassVar[int]
    ORG_FIELD_NUMBER: _ClassVar[int]
    KNOWN_COMPETITORS_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_CITATIONS_FIELD_NUMBER: _ClassVar[int]
    answer_markdown: str
    org: Org
    known_competitors: _containers.RepeatedScalarFieldContainer[str]
    provider_citations: _containers.RepeatedCompositeFieldContainer[_common_pb2.Citation]
    def __init__(self, answer_markdown: _Optional[str] = ..., org: _Optional[_Union[Org, _Mapping]] = ..., known_competitors: _Optional[_Iterable[str]] = ..., provider_citations: _Optional[_Iterable[_Union[_common_pb2.Citation, _Mapping]]] = ...) -> None: ...

class OrgEval(_message.Message):
    __slots__ = ("mentioned", "mention_count", "rank", "first_offset", "sentiment", "evidence", "owned_citation_count", "language", "mentions")
    class Sentiment(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        SENTIMENT_UNSPECIFIED: _ClassVar[OrgEval.Sentiment]
        POSITIVE: _ClassVar[OrgEval.Sentiment]
        NEUTRAL: _ClassVar[OrgEval.Sentiment]
        NEGATIVE: _ClassVar[OrgEval.Sentiment]
        MIXED: _ClassVar[OrgEval.Sentiment]
    SENTIMENT_UNSPECIFIED: OrgEval.Sentiment
    POSITIVE: OrgEval.Sentiment
    NEUTRAL: OrgEval.Sentiment
    NEGATIVE: OrgEval.Sentiment
    MIXED: OrgEval.Sentiment
    MENTIONED_FIELD_NUMBER: _ClassVar[int]
    MENTION_COUNT_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    FIRST_OFFSET_FIELD_NUMBER: _ClassVar[int]
    SENTIMENT_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    OWNED_CITATION_COUNT_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    MENTIONS_FIELD_NUMBER: _ClassVar[int]
    mentioned: bool
    mention_count: int
    rank: int
    first_offset: int
    sentiment: OrgEval.Sentiment
    evidence: str
    owned_citation_count: int
    language: str
    mentions: _containers.RepeatedCompositeFieldContainer[MentionSentiment]
    def __init__(self, mentioned: _Optional[bool] = ..., mention_count: _Optional[int] = ..., rank: _Optional[int] = ..., first_offset: _Optional[int] = ..., sentiment: _Optional[_Union[OrgEval.Sentiment, str]] = ..., evidence: _Optional[str] = ..., owned_citation_count: _Optional[int] = ..., language: _Optional[str] = ..., mentions: _Optional[_Iterable[_Union[MentionSentiment, _Mapping]]] = ...) -> None: ...

class EvidenceSpan(_message.Message):
    __slots__ = ("start", "end", "text", "polarity")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    POLARITY_FIELD_NUMBER: _ClassVar[int]
    start: int
    end: int
    text: str
    polarity: int
    def __init__(self, start: _Optional[int] = ..., end: _Optional[int] = ..., text: _Optional[str] = ..., polarity: _Optional[int] = ...) -> None: ...

class MentionSentiment(_message.Message):
    __slots__ = ("offset", "sentiment", "evidence")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    SENTIMENT_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    offset: int
    sentiment: OrgEval.Sentiment
    evidence: _containers.RepeatedCompositeFieldContainer[EvidenceSpan]
    def __init__(self, offset: _Optional[int] = ..., sentiment: _Optional[_Union[OrgEval.Sentiment, str]] = ..., evidence: _Optional[_Iterable[_Union[EvidenceSpan, _Mapping]]] = ...) -> None: ...

class Competitor(_message.Message):
    __slots__ = ("name", "rank", "mention_count")
    NAME_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    MENTION_COUNT_FIELD_NUMBER: _ClassVar[int]
    name: str
    rank: int
    mention_count: int
    def __init__(self, name: _Optional[str] = ..., rank: _Optional[int] = ..., mention_count: _Optional[int] = ...) -> None: ...

class ExtractedCitation(_message.Message):
    __slots__ = ("url", "domain", "title", "position", "source", "owned", "competitor", "competitor_name")
    class Source(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        SOURCE_UNSPECIFIED: _ClassVar[ExtractedCitation.Source]
        PROVIDER: _ClassVar[ExtractedCitation.Source]
        INLINE_LINK: _ClassVar[ExtractedCitation.Source]
        BARE_URL: _ClassVar[ExtractedCitation.Source]
    SOURCE_UNSPECIFIED: ExtractedCitation.Source
    PROVIDER: ExtractedCitation.Source
    INLINE_LINK: ExtractedCitation.Source
    BARE_URL: ExtractedCitation.Source
    URL_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    OWNED_FIELD_NUMBER: _ClassVar[int]
    COMPETITOR_FIELD_NUMBER: _ClassVar[int]
    COMPETITOR_NAME_FIELD_NUMBER: _ClassVar[int]
    url: str
    domain: str
    title: str
    position: int
    source: ExtractedCitation.Source
    owned: bool
    competitor: bool
    competitor_name: str
    def __init__(self, url: _Optional[str] = ..., domain: _Optional[str] = ..., title: _Optional[str] = ..., position: _Optional[int] = ..., source: _Optional[_Union[ExtractedCitation.Source, str]] = ..., owned: _Optional[bool] = ..., competitor: _Optional[bool] = ..., competitor_name: _Optional[str] = ...) -> None: ...

class ExtractResponse(_message.Message):
    __slots__ = ("org_eval", "competitors", "citations")
    ORG_EVAL_FIELD_NUMBER: _ClassVar[int]
    COMPETITORS_FIELD_NUMBER: _ClassVar[int]
    CITATIONS_FIELD_NUMBER: _ClassVar[int]
    org_eval: OrgEval
    competitors: _containers.RepeatedCompositeFieldContainer[Competitor]
    citations: _containers.RepeatedCompositeFieldContainer[ExtractedCitation]
    def __init__(self, org_eval: _Optional[_Union[OrgEval, _Mapping]] = ..., competitors: _Optional[_Iterable[_Union[Competitor, _Mapping]]] = ..., citations: _Optional[_Iterable[_Union[ExtractedCitation, _Mapping]]] = ...) -> None: ...

class ExtractCompetitorsResponse(_message.Message):
    __slots__ = ("competitors",)
    COMPETITORS_FIELD_NUMBER: _ClassVar[int]
    competitors: _containers.RepeatedCompositeFieldContainer[Competitor]
    def __init__(self, competitors: _Optional[_Iterable[_Union[Competitor, _Mapping]]] = ...) -> None: ...

class ExtractCitationsResponse(_message.Message):
    __slots__ = ("citations",)
    CITATIONS_FIELD_NUMBER: _ClassVar[int]
    citations: _containers.RepeatedCompositeFieldContainer[ExtractedCitation]
    def __init__(self, citations: _Optional[_Iterable[_Union[ExtractedCitation, _Mapping]]] = ...) -> None: ...

class NormalizeOrgRequest(_message.Message):
    __slots__ = ("org",)
    ORG_FIELD_NUMBER: _ClassVar[int]
    org: Org
    def __init__(self, org: _Optional[_Union[Org, _Mapping]] = ...) -> None: ...

class NormalizeOrgResponse(_message.Message):
    __slots__ = ("name", "domain", "domain_stem", "name_variations", "keys")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_STEM_FIELD_NUMBER: _ClassVar[int]
    NAME_VARIATIONS_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    name: str
    domain: str
    domain_stem: str
    name_variations: _containers.RepeatedScalarFieldContainer[str]
    keys: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., domain: _Optional[str] = ..., domain_stem: _Optional[str] = ..., name_variations: _Optional[_Iterable[str]] = ..., keys: _Optional[_Iterable[str]] = ...) -> None: ...

class WeightedName(_message.Message):
    __slots__ = ("name", "weight")
    NAME_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    name: str
    weight: int
    def __init__(self, name: _Optional[str] = ..., weight: _Optional[int] = ...) -> None: ...

class MergeCompetitorsRequest(_message.Message):
    __slots__ = ("names",)
    NAMES_FIELD_NUMBER: _ClassVar[int]
    names: _containers.RepeatedCompositeFieldContainer[WeightedName]
    def __init__(self, names: _Optional[_Iterable[_Union[WeightedName, _Mapping]]] = ...) -> None: ...

class MergedName(_message.Message):
    __slots__ = ("name", "canonical")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CANONICAL_FIELD_NUMBER: _ClassVar[int]
    name: str
    canonical: str
    def __init__(self, name: _Optional[str] = ..., canonical: _Optional[str] = ...) -> None: ...

class MergeCompetitorsResponse(_message.Message):
    __slots__ = ("names",)
    NAMES_FIELD_NUMBER: _ClassVar[int]
    names: _containers.RepeatedCompositeFieldContainer[MergedName]
    def __init__(self, names: _Optional[_Iterable[_Union[MergedName, _Mapping]]] = ...) -> None: ...
