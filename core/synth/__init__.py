"""Realistic synthetic Worknet corpus: postings, job seekers, training courses, Worknet XML.

Public API: :func:`generate_postings`, :func:`write_worknet_xml`, :func:`generate_seekers`,
:func:`generate_courses`. :data:`DEFAULT_REF_DATE` anchors dates when no ``ref_date`` is
given (fixed, so a seed gives the same corpus on any day).
"""

from core.seekers import SEEKER_SCHEMA
from core.synth.people import COURSE_SCHEMA, generate_courses
from core.synth.postings import DEFAULT_REF_DATE, generate_postings
from core.synth.seekers import generate_interactions, generate_seekers
from core.synth.worknet import write_worknet_xml

__all__ = [
    "COURSE_SCHEMA",
    "DEFAULT_REF_DATE",
    "SEEKER_SCHEMA",
    "generate_courses",
    "generate_interactions",
    "generate_postings",
    "generate_seekers",
    "write_worknet_xml",
]
