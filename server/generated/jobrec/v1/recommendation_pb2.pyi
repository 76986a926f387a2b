from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Posting(_message.Message):
    __slots__ = ("posting_id", "company", "title", "description", "occupation_code", "region", "sido", "lat", "lng", "min_education_level", "max_education_level", "career", "min_career_years", "wage_type", "wage_min", "wage_max", "monthly_wage", "employment_type", "registered_on", "closes_on", "holiday_type", "major", "certificates", "preferences", "near_station", "work_hours", "sigungu")
    POSTING_ID_FIELD_NUMBER: _ClassVar[int]
    COMPANY_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    OCCUPATION_CODE_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    SIDO_FIELD_NUMBER: _ClassVar[int]
    LAT_FIELD_NUMBER: _ClassVar[int]
    LNG_FIELD_NUMBER: _ClassVar[int]
    MIN_EDUCATION_LEVEL_FIELD_NUMBER: _ClassVar[int]
    MAX_EDUCATION_LEVEL_FIELD_NUMBER: _ClassVar[int]
    CAREER_FIELD_NUMBER: _ClassVar[int]
    MIN_CAREER_YEARS_FIELD_NUMBER: _ClassVar[int]
    WAGE_TYPE_FIELD_NUMBER: _ClassVar[int]
    WAGE_MIN_FIELD_NUMBER: _ClassVar[int]
    WAGE_MAX_FIELD_NUMBER: _ClassVar[int]
    MONTHLY_WAGE_FIELD_NUMBER: _ClassVar[int]
    EMPLOYMENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_ON_FIELD_NUMBER: _ClassVar[int]
    CLOSES_ON_FIELD_NUMBER: _ClassVar[int]
    HOLIDAY_TYPE_FIELD_NUMBER: _ClassVar[int]
    MAJOR_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATES_FIELD_NUMBER: _ClassVar[int]
    PREFERENCES_FIELD_NUMBER: _ClassVar[int]
    NEAR_STATION_FIELD_NUMBER: _ClassVar[int]
    WORK_HOURS_FIELD_NUMBER: _ClassVar[int]
    SIGUNGU_FIELD_NUMBER: _ClassVar[int]
    posting_id: str
    company: str
    title: str
    description: str
    occupation_code: str
    region: str
    sido: str
    lat: float
    lng: float
    min_education_level: int
    max_education_level: int
    career: str
    min_career_years: int
    wage_type: str
    wage_min: int
    wage_max: int
    monthly_wage: int
    employment_type: str
    registered_on: str
    closes_on: str
    holiday_type: str
    major: str
    certificates: str
    preferences: str
    near_station: str
    work_hours: str
    sigungu: str
    def __init__(self, posting_id: _Optional[str] = ..., company: _Optional[str] = ..., title: _Optional[str] = ..., description: _Optional[str] = ..., occupation_code: _Optional[str] = ..., region: _Optional[str] = ..., sido: _Optional[str] = ..., lat: _Optional[float] = ..., lng: _Optional[float] = ..., min_education_level: _Optional[int] = ..., max_education_level: _Optional[int] = ..., career: _Optional[str] = ..., min_career_years: _Optional[int] = ..., wage_type: _Optional[str] = ..., wage_min: _Optional[int] = ..., wage_max: _Optional[int] = ..., monthly_wage: _Optional[int] = ..., employment_type: _Optional[str] = ..., registered_on: _Optional[str] = ..., closes_on: _Optional[str] = ..., holiday_type: _Optional[str] = ..., major: _Optional[str] = ..., certificates: _Optional[str] = ..., preferences: _Optional[str] = ..., near_station: _Optional[str] = ..., work_hours: _Optional[str] = ..., sigungu: _Optional[str] = ...) -> None: ...

class RuleOverrides(_message.Message):
    __slots__ = ("capital_radius_km", "other_radius_km", "education_policy", "career_filter", "exclude_expired", "max_per_company", "ref_date")
    CAPITAL_RADIUS_KM_FIELD_NUMBER: _ClassVar[int]
    OTHER_RADIUS_KM_FIELD_NUMBER: _ClassVar[int]
    EDUCATION_POLICY_FIELD_NUMBER: _ClassVar[int]
    CAREER_FILTER_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_EXPIRED_FIELD_NUMBER: _ClassVar[int]
    MAX_PER_COMPANY_FIELD_NUMBER: _ClassVar[int]
    REF_DATE_FIELD_NUMBER: _ClassVar[int]
    capital_radius_km: float
    other_radius_km: float
    education_policy: str
    career_filter: bool
    exclude_expired: bool
    max_per_company: int
    ref_date: str
    def __init__(self, capital_radius_km: _Optional[float] = ..., other_radius_km: _Optional[float] = ..., education_policy: _Optional[str] = ..., career_filter: _Optional[bool] = ..., exclude_expired: _Optional[bool] = ..., max_per_company: _Optional[int] = ..., ref_date: _Optional[str] = ...) -> None: ...

class AppliedRules(_message.Message):
    __slots__ = ("capital_radius_km", "other_radius_km", "education_policy", "career_filter", "exclude_expired", "max_per_company", "ref_date")
    CAPITAL_RADIUS_KM_FIELD_NUMBER: _ClassVar[int]
    OTHER_RADIUS_KM_FIELD_NUMBER: _ClassVar[int]
    EDUCATION_POLICY_FIELD_NUMBER: _ClassVar[int]
    CAREER_FILTER_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_EXPIRED_FIELD_NUMBER: _ClassVar[int]
    MAX_PER_COMPANY_FIELD_NUMBER: _ClassVar[int]
    REF_DATE_FIELD_NUMBER: _ClassVar[int]
    capital_radius_km: float
    other_radius_km: float
    education_policy: str
    career_filter: bool
    exclude_expired: bool
    max_per_company: int
    ref_date: str
    def __init__(self, capital_radius_km: _Optional[float] = ..., other_radius_km: _Optional[float] = ..., education_policy: _Optional[str] = ..., career_filter: _Optional[bool] = ..., exclude_expired: _Optional[bool] = ..., max_per_company: _Optional[int] = ..., ref_date: _Optional[str] = ...) -> None: ...

class SimilarPostingsRequest(_message.Message):
    __slots__ = ("posting_id", "posting", "k", "rules")
    POSTING_ID_FIELD_NUMBER: _ClassVar[int]
    POSTING_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    posting_id: str
    posting: Posting
    k: int
    rules: RuleOverrides
    def __init__(self, posting_id: _Optional[str] = ..., posting: _Optional[_Union[Posting, _Mapping]] = ..., k: _Optional[int] = ..., rules: _Optional[_Union[RuleOverrides, _Mapping]] = ...) -> None: ...

class Recommendation(_message.Message):
    __slots__ = ("posting_id", "score", "distance_km", "title", "company", "region", "rank")
    POSTING_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_KM_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    COMPANY_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    posting_id: str
    score: float
    distance_km: float
    title: str
    company: str
    region: str
    rank: int
    def __init__(self, posting_id: _Optional[str] = ..., score: _Optional[float] = ..., distance_km: _Optional[float] = ..., title: _Optional[str] = ..., company: _Optional[str] = ..., region: _Optional[str] = ..., rank: _Optional[int] = ...) -> None: ...

class SimilarPostingsResponse(_message.Message):
    __slots__ = ("recommendations", "query_posting_id", "rules")
    RECOMMENDATIONS_FIELD_NUMBER: _ClassVar[int]
    QUERY_POSTING_ID_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    recommendations: _containers.RepeatedCompositeFieldContainer[Recommendation]
    query_posting_id: str
    rules: AppliedRules
    def __init__(self, recommendations: _Optional[_Iterable[_Union[Recommendation, _Mapping]]] = ..., query_posting_id: _Optional[str] = ..., rules: _Optional[_Union[AppliedRules, _Mapping]] = ...) -> None: ...

class UpsertSummary(_message.Message):
    __slots__ = ("inserted", "updated", "received")
    INSERTED_FIELD_NUMBER: _ClassVar[int]
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_FIELD_NUMBER: _ClassVar[int]
    inserted: int
    updated: int
    received: int
    def __init__(self, inserted: _Optional[int] = ..., updated: _Optional[int] = ..., received: _Optional[int] = ...) -> None: ...

class DeletePostingsRequest(_message.Message):
    __slots__ = ("posting_ids",)
    POSTING_IDS_FIELD_NUMBER: _ClassVar[int]
    posting_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, posting_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class DeleteSummary(_message.Message):
    __slots__ = ("deleted", "not_found")
    DELETED_FIELD_NUMBER: _ClassVar[int]
    NOT_FOUND_FIELD_NUMBER: _ClassVar[int]
    deleted: int
    not_found: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, deleted: _Optional[int] = ..., not_found: _Optional[_Iterable[str]] = ...) -> None: ...

class GetPostingRequest(_message.Message):
    __slots__ = ("posting_id",)
    POSTING_ID_FIELD_NUMBER: _ClassVar[int]
    posting_id: str
    def __init__(self, posting_id: _Optional[str] = ...) -> None: ...
