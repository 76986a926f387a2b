from server.generated.jobrec.v1 import recommendation_pb2 as _recommendation_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CourseRuleOverrides(_message.Message):
    __slots__ = ("capital_radius_km", "other_radius_km", "include_online", "horizon_days", "admit_running", "exclude_full", "ref_date")
    CAPITAL_RADIUS_KM_FIELD_NUMBER: _ClassVar[int]
    OTHER_RADIUS_KM_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_ONLINE_FIELD_NUMBER: _ClassVar[int]
    HORIZON_DAYS_FIELD_NUMBER: _ClassVar[int]
    ADMIT_RUNNING_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_FULL_FIELD_NUMBER: _ClassVar[int]
    REF_DATE_FIELD_NUMBER: _ClassVar[int]
    capital_radius_km: float
    other_radius_km: float
    include_online: bool
    horizon_days: int
    admit_running: bool
    exclude_full: bool
    ref_date: str
    def __init__(self, capital_radius_km: _Optional[float] = ..., other_radius_km: _Optional[float] = ..., include_online: _Optional[bool] = ..., horizon_days: _Optional[int] = ..., admit_running: _Optional[bool] = ..., exclude_full: _Optional[bool] = ..., ref_date: _Optional[str] = ...) -> None: ...

class AppliedCourseRules(_message.Message):
    __slots__ = ("capital_radius_km", "other_radius_km", "include_online", "horizon_days", "admit_running", "exclude_full", "ref_date")
    CAPITAL_RADIUS_KM_FIELD_NUMBER: _ClassVar[int]
    OTHER_RADIUS_KM_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_ONLINE_FIELD_NUMBER: _ClassVar[int]
    HORIZON_DAYS_FIELD_NUMBER: _ClassVar[int]
    ADMIT_RUNNING_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_FULL_FIELD_NUMBER: _ClassVar[int]
    REF_DATE_FIELD_NUMBER: _ClassVar[int]
    capital_radius_km: float
    other_radius_km: float
    include_online: bool
    horizon_days: int
    admit_running: bool
    exclude_full: bool
    ref_date: str
    def __init__(self, capital_radius_km: _Optional[float] = ..., other_radius_km: _Optional[float] = ..., include_online: _Optional[bool] = ..., horizon_days: _Optional[int] = ..., admit_running: _Optional[bool] = ..., exclude_full: _Optional[bool] = ..., ref_date: _Optional[str] = ...) -> None: ...

class CoursesForPostingRequest(_message.Message):
    __slots__ = ("posting_id", "posting", "k", "held_certificates", "rules")
    POSTING_ID_FIELD_NUMBER: _ClassVar[int]
    POSTING_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    HELD_CERTIFICATES_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    posting_id: str
    posting: _recommendation_pb2.Posting
    k: int
    held_certificates: _containers.RepeatedScalarFieldContainer[str]
    rules: CourseRuleOverrides
    def __init__(self, posting_id: _Optional[str] = ..., posting: _Optional[_Union[_recommendation_pb2.Posting, _Mapping]] = ..., k: _Optional[int] = ..., held_certificates: _Optional[_Iterable[str]] = ..., rules: _Optional[_Union[CourseRuleOverrides, _Mapping]] = ...) -> None: ...

class CourseSeekerProfile(_message.Message):
    __slots__ = ("lat", "lng", "sido", "home_region", "desired_regions", "desired_occupation_codes", "certificates", "resume_text")
    LAT_FIELD_NUMBER: _ClassVar[int]
    LNG_FIELD_NUMBER: _ClassVar[int]
    SIDO_FIELD_NUMBER: _ClassVar[int]
    HOME_REGION_FIELD_NUMBER: _ClassVar[int]
    DESIRED_REGIONS_FIELD_NUMBER: _ClassVar[int]
    DESIRED_OCCUPATION_CODES_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATES_FIELD_NUMBER: _ClassVar[int]
    RESUME_TEXT_FIELD_NUMBER: _ClassVar[int]
    lat: float
    lng: float
    sido: str
    home_region: str
    desired_regions: _containers.RepeatedScalarFieldContainer[str]
    desired_occupation_codes: _containers.RepeatedScalarFieldContainer[str]
    certificates: _containers.RepeatedScalarFieldContainer[str]
    resume_text: str
    def __init__(self, lat: _Optional[float] = ..., lng: _Optional[float] = ..., sido: _Optional[str] = ..., home_region: _Optional[str] = ..., desired_regions: _Optional[_Iterable[str]] = ..., desired_occupation_codes: _Optional[_Iterable[str]] = ..., certificates: _Optional[_Iterable[str]] = ..., resume_text: _Optional[str] = ...) -> None: ...

class CoursesForSeekerRequest(_message.Message):
    __slots__ = ("seeker", "seeker_id", "k", "rules")
    SEEKER_FIELD_NUMBER: _ClassVar[int]
    SEEKER_ID_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    seeker: CourseSeekerProfile
    seeker_id: str
    k: int
    rules: CourseRuleOverrides
    def __init__(self, seeker: _Optional[_Union[CourseSeekerProfile, _Mapping]] = ..., seeker_id: _Optional[str] = ..., k: _Optional[int] = ..., rules: _Optional[_Union[CourseRuleOverrides, _Mapping]] = ...) -> None: ...

class CourseRecommendation(_message.Message):
    __slots__ = ("course_id", "title", "institution", "score", "distance_km", "online", "training_type", "start_date", "end_date", "cost", "self_pay", "employment_rate", "family_code", "gap_certificates", "reasons", "rank")
    COURSE_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    INSTITUTION_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_KM_FIELD_NUMBER: _ClassVar[int]
    ONLINE_FIELD_NUMBER: _ClassVar[int]
    TRAINING_TYPE_FIELD_NUMBER: _ClassVar[int]
    START_DATE_FIELD_NUMBER: _ClassVar[int]
    END_DATE_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    SELF_PAY_FIELD_NUMBER: _ClassVar[int]
    EMPLOYMENT_RATE_FIELD_NUMBER: _ClassVar[int]
    FAMILY_CODE_FIELD_NUMBER: _ClassVar[int]
    GAP_CERTIFICATES_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    course_id: str
    title: str
    institution: str
    score: float
    distance_km: float
    online: bool
    training_type: str
    start_date: str
    end_date: str
    cost: int
    self_pay: int
    employment_rate: float
    family_code: str
    gap_certificates: _containers.RepeatedScalarFieldContainer[str]
    reasons: _containers.RepeatedScalarFieldContainer[str]
    rank: int
    def __init__(self, course_id: _Optional[str] = ..., title: _Optional[str] = ..., institution: _Optional[str] = ..., score: _Optional[float] = ..., distance_km: _Optional[float] = ..., online: _Optional[bool] = ..., training_type: _Optional[str] = ..., start_date: _Optional[str] = ..., end_date: _Optional[str] = ..., cost: _Optional[int] = ..., self_pay: _Optional[int] = ..., employment_rate: _Optional[float] = ..., family_code: _Optional[str] = ..., gap_certificates: _Optional[_Iterable[str]] = ..., reasons: _Optional[_Iterable[str]] = ..., rank: _Optional[int] = ...) -> None: ...

class CoursesResponse(_message.Message):
    __slots__ = ("courses", "query_id", "skill_gap", "rules")
    COURSES_FIELD_NUMBER: _ClassVar[int]
    QUERY_ID_FIELD_NUMBER: _ClassVar[int]
    SKILL_GAP_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    courses: _containers.RepeatedCompositeFieldContainer[CourseRecommendation]
    query_id: str
    skill_gap: _containers.RepeatedScalarFieldContainer[str]
    rules: AppliedCourseRules
    def __init__(self, courses: _Optional[_Iterable[_Union[CourseRecommendation, _Mapping]]] = ..., query_id: _Optional[str] = ..., skill_gap: _Optional[_Iterable[str]] = ..., rules: _Optional[_Union[AppliedCourseRules, _Mapping]] = ...) -> None: ...
