from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DesiredRegion(_message.Message):
    __slots__ = ("sido", "sigungu")
    SIDO_FIELD_NUMBER: _ClassVar[int]
    SIGUNGU_FIELD_NUMBER: _ClassVar[int]
    sido: str
    sigungu: str
    def __init__(self, sido: _Optional[str] = ..., sigungu: _Optional[str] = ...) -> None: ...

class CareerEntry(_message.Message):
    __slots__ = ("occupation_code", "years")
    OCCUPATION_CODE_FIELD_NUMBER: _ClassVar[int]
    YEARS_FIELD_NUMBER: _ClassVar[int]
    occupation_code: str
    years: int
    def __init__(self, occupation_code: _Optional[str] = ..., years: _Optional[int] = ...) -> None: ...

class SeekerProfile(_message.Message):
    __slots__ = ("seeker_id", "desired_occupations", "desired_regions", "home_lat", "home_lng", "max_commute_km", "education_level", "career_years", "career_history", "certificates", "desired_monthly_wage", "resume_text")
    SEEKER_ID_FIELD_NUMBER: _ClassVar[int]
    DESIRED_OCCUPATIONS_FIELD_NUMBER: _ClassVar[int]
    DESIRED_REGIONS_FIELD_NUMBER: _ClassVar[int]
    HOME_LAT_FIELD_NUMBER: _ClassVar[int]
    HOME_LNG_FIELD_NUMBER: _ClassVar[int]
    MAX_COMMUTE_KM_FIELD_NUMBER: _ClassVar[int]
    EDUCATION_LEVEL_FIELD_NUMBER: _ClassVar[int]
    CAREER_YEARS_FIELD_NUMBER: _ClassVar[int]
    CAREER_HISTORY_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATES_FIELD_NUMBER: _ClassVar[int]
    DESIRED_MONTHLY_WAGE_FIELD_NUMBER: _ClassVar[int]
    RESUME_TEXT_FIELD_NUMBER: _ClassVar[int]
    seeker_id: str
    desired_occupations: _containers.RepeatedScalarFieldContainer[str]
    desired_regions: _containers.RepeatedCompositeFieldContainer[DesiredRegion]
    home_lat: float
    home_lng: float
    max_commute_km: float
    education_level: int
    career_years: int
    career_history: _containers.RepeatedCompositeFieldContainer[CareerEntry]
    certificates: _containers.RepeatedScalarFieldContainer[str]
    desired_monthly_wage: int
    resume_text: str
    def __init__(self, seeker_id: _Optional[str] = ..., desired_occupations: _Optional[_Iterable[str]] = ..., desired_regions: _Optional[_Iterable[_Union[DesiredRegion, _Mapping]]] = ..., home_lat: _Optional[float] = ..., home_lng: _Optional[float] = ..., max_commute_km: _Optional[float] = ..., education_level: _Optional[int] = ..., career_years: _Optional[int] = ..., career_history: _Optional[_Iterable[_Union[CareerEntry, _Mapping]]] = ..., certificates: _Optional[_Iterable[str]] = ..., desired_monthly_wage: _Optional[int] = ..., resume_text: _Optional[str] = ...) -> None: ...

class MatchReasons(_message.Message):
    __slots__ = ("matched_region", "distance_km", "occupation_relation", "education_ok", "career_ok", "monthly_wage", "desired_wage", "wage_vs_desired", "similarity")
    MATCHED_REGION_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_KM_FIELD_NUMBER: _ClassVar[int]
    OCCUPATION_RELATION_FIELD_NUMBER: _ClassVar[int]
    EDUCATION_OK_FIELD_NUMBER: _ClassVar[int]
    CAREER_OK_FIELD_NUMBER: _ClassVar[int]
    MONTHLY_WAGE_FIELD_NUMBER: _ClassVar[int]
    DESIRED_WAGE_FIELD_NUMBER: _ClassVar[int]
    WAGE_VS_DESIRED_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    matched_region: str
    distance_km: float
    occupation_relation: str
    education_ok: bool
    career_ok: bool
    monthly_wage: int
    desired_wage: int
    wage_vs_desired: str
    similarity: float
    def __init__(self, matched_region: _Optional[str] = ..., distance_km: _Optional[float] = ..., occupation_relation: _Optional[str] = ..., education_ok: _Optional[bool] = ..., career_ok: _Optional[bool] = ..., monthly_wage: _Optional[int] = ..., desired_wage: _Optional[int] = ..., wage_vs_desired: _Optional[str] = ..., similarity: _Optional[float] = ...) -> None: ...

class RecommendJobsRequest(_message.Message):
    __slots__ = ("seeker_id", "profile", "k", "sort", "ref_date", "wage_hard")
    SEEKER_ID_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    SORT_FIELD_NUMBER: _ClassVar[int]
    REF_DATE_FIELD_NUMBER: _ClassVar[int]
    WAGE_HARD_FIELD_NUMBER: _ClassVar[int]
    seeker_id: str
    profile: SeekerProfile
    k: int
    sort: str
    ref_date: str
    wage_hard: bool
    def __init__(self, seeker_id: _Optional[str] = ..., profile: _Optional[_Union[SeekerProfile, _Mapping]] = ..., k: _Optional[int] = ..., sort: _Optional[str] = ..., ref_date: _Optional[str] = ..., wage_hard: _Optional[bool] = ...) -> None: ...

class JobMatch(_message.Message):
    __slots__ = ("posting_id", "score", "title", "company", "region", "reasons", "reason_text")
    POSTING_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    COMPANY_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    REASON_TEXT_FIELD_NUMBER: _ClassVar[int]
    posting_id: str
    score: float
    title: str
    company: str
    region: str
    reasons: MatchReasons
    reason_text: str
    def __init__(self, posting_id: _Optional[str] = ..., score: _Optional[float] = ..., title: _Optional[str] = ..., company: _Optional[str] = ..., region: _Optional[str] = ..., reasons: _Optional[_Union[MatchReasons, _Mapping]] = ..., reason_text: _Optional[str] = ...) -> None: ...

class RecommendJobsResponse(_message.Message):
    __slots__ = ("matches",)
    MATCHES_FIELD_NUMBER: _ClassVar[int]
    matches: _containers.RepeatedCompositeFieldContainer[JobMatch]
    def __init__(self, matches: _Optional[_Iterable[_Union[JobMatch, _Mapping]]] = ...) -> None: ...

class RecommendCandidatesRequest(_message.Message):
    __slots__ = ("posting_id", "k", "sort")
    POSTING_ID_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    SORT_FIELD_NUMBER: _ClassVar[int]
    posting_id: str
    k: int
    sort: str
    def __init__(self, posting_id: _Optional[str] = ..., k: _Optional[int] = ..., sort: _Optional[str] = ...) -> None: ...

class CandidateMatch(_message.Message):
    __slots__ = ("seeker_id", "score", "desired_occupations", "desired_regions", "education_level", "career_years", "reasons", "reason_text")
    SEEKER_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    DESIRED_OCCUPATIONS_FIELD_NUMBER: _ClassVar[int]
    DESIRED_REGIONS_FIELD_NUMBER: _ClassVar[int]
    EDUCATION_LEVEL_FIELD_NUMBER: _ClassVar[int]
    CAREER_YEARS_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    REASON_TEXT_FIELD_NUMBER: _ClassVar[int]
    seeker_id: str
    score: float
    desired_occupations: _containers.RepeatedScalarFieldContainer[str]
    desired_regions: _containers.RepeatedScalarFieldContainer[str]
    education_level: int
    career_years: int
    reasons: MatchReasons
    reason_text: str
    def __init__(self, seeker_id: _Optional[str] = ..., score: _Optional[float] = ..., desired_occupations: _Optional[_Iterable[str]] = ..., desired_regions: _Optional[_Iterable[str]] = ..., education_level: _Optional[int] = ..., career_years: _Optional[int] = ..., reasons: _Optional[_Union[MatchReasons, _Mapping]] = ..., reason_text: _Optional[str] = ...) -> None: ...

class RecommendCandidatesResponse(_message.Message):
    __slots__ = ("candidates",)
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    candidates: _containers.RepeatedCompositeFieldContainer[CandidateMatch]
    def __init__(self, candidates: _Optional[_Iterable[_Union[CandidateMatch, _Mapping]]] = ...) -> None: ...

class Interaction(_message.Message):
    __slots__ = ("seeker_id", "posting_id", "event", "at")
    SEEKER_ID_FIELD_NUMBER: _ClassVar[int]
    POSTING_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    seeker_id: str
    posting_id: str
    event: str
    at: str
    def __init__(self, seeker_id: _Optional[str] = ..., posting_id: _Optional[str] = ..., event: _Optional[str] = ..., at: _Optional[str] = ...) -> None: ...

class RecordInteractionsRequest(_message.Message):
    __slots__ = ("interactions",)
    INTERACTIONS_FIELD_NUMBER: _ClassVar[int]
    interactions: _containers.RepeatedCompositeFieldContainer[Interaction]
    def __init__(self, interactions: _Optional[_Iterable[_Union[Interaction, _Mapping]]] = ...) -> None: ...

class RecordInteractionsResponse(_message.Message):
    __slots__ = ("recorded",)
    RECORDED_FIELD_NUMBER: _ClassVar[int]
    recorded: int
    def __init__(self, recorded: _Optional[int] = ...) -> None: ...

class UpsertSeekersRequest(_message.Message):
    __slots__ = ("seekers",)
    SEEKERS_FIELD_NUMBER: _ClassVar[int]
    seekers: _containers.RepeatedCompositeFieldContainer[SeekerProfile]
    def __init__(self, seekers: _Optional[_Iterable[_Union[SeekerProfile, _Mapping]]] = ...) -> None: ...

class UpsertSeekersResponse(_message.Message):
    __slots__ = ("upserted",)
    UPSERTED_FIELD_NUMBER: _ClassVar[int]
    upserted: int
    def __init__(self, upserted: _Optional[int] = ...) -> None: ...

class DeleteSeekersRequest(_message.Message):
    __slots__ = ("seeker_ids",)
    SEEKER_IDS_FIELD_NUMBER: _ClassVar[int]
    seeker_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, seeker_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class DeleteSeekersResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: int
    def __init__(self, deleted: _Optional[int] = ...) -> None: ...
