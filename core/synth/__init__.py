"""Realistic synthetic Worknet corpus: postings, job seekers, training courses, Worknet XML.

Public API: :func:`generate_postings`, :func:`write_worknet_xml`, :func:`generate_seekers`,
:func:`generate_courses` / :func:`generate_course_corpus` (with the ground truth),
:func:`write_hrd_xml`. :data:`DEFAULT_REF_DATE` anchors dates when no ``ref_date`` is
given (fixed, so a seed gives the same corpus on any day).
"""

from core.courses import COURSE_SCHEMA
from core.seekers import SEEKER_SCHEMA
from core.synth.courses import generate_course_corpus, generate_courses, write_hrd_xml
from core.synth.postings import DEFAULT_REF_DATE, generate_postings
from core.synth.seekers import generate_interactions, generate_seekers
from core.synth.worknet import write_worknet_xml

__all__ = [
    "COURSE_SCHEMA",
    "DEFAULT_REF_DATE",
    "SEEKER_SCHEMA",
    "generate_course_corpus",
    "generate_courses",
    "generate_interactions",
    "generate_postings",
    "generate_seekers",
    "write_hrd_xml",
    "write_worknet_xml",
]
