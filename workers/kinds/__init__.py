"""The built-in collection kinds: importing this module registers them.

A new kind adds its module here (one import) so every shard process knows it.
"""

from __future__ import annotations

from workers.kinds.courses import COURSE_KIND, COURSES
from workers.kinds.postings import POSTING_KIND, POSTINGS

__all__ = ["COURSES", "COURSE_KIND", "POSTINGS", "POSTING_KIND"]
