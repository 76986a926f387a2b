"""The packed columns of a Worknet search-list crawl, unpacked into ingestion fields.

Worknet's search list shows a posting in a few packed cells, which crawls keep as is:

* ``career_education_region``: "경력1년 학력무관 강원특별자치도 원주시 문막읍",
  "신입/경력2년 고졸 ~ 대졸(4년) 서울 성동구" -> career, education, region;
* ``conditions``: "월급 270 만원 이상\\n비정규 주5일\\n08:00~17:00" -> wage, employment
  type (정규 regular, 비정규 non-regular of an unstated kind: ``other``, 시간 part-time),
  holiday type, work hours;
* ``dates``: "24/03/26 등록\\n24/04/19 마감" -> registered_on, closes_on.

Each function returns only the fields it found, so a column map may still map a field
from its own column.
"""

from __future__ import annotations

import re

_EDU_TILDE = re.compile(r"\s*~\s*")
_HOURS = re.compile(r"^\d{1,2}:\d{2}\s*~\s*\d{1,2}:\d{2}$")
_WAGE = re.compile(r"^(시급|일급|주급|월급|연봉)\s")
_DAYS = re.compile(r"주\s*(\d)\s*일")
_DATE = re.compile(r"(\d{2,4}[/.\-]\d{1,2}[/.\-]\d{1,2})\s*(등록|마감)")


def career_education_region(text: str) -> dict[str, str]:
    """career, education and region from "경력1년 학력무관 경기도 오산시 황새로"."""
    parts = text.split()
    if not parts:
        return {}
    out = {"career": parts[0]}
    rest = _EDU_TILDE.sub("~", " ".join(parts[1:])).split()
    if rest:
        out["education"] = rest[0]
        if len(rest) > 1:
            out["region"] = " ".join(rest[1:])
    return out


def conditions(text: str) -> dict[str, str]:
    """wage, employment_type_name, holiday_type and work_hours from the conditions cell."""
    out: dict[str, str] = {}
    for line in (ln.strip() for ln in text.splitlines()):
        if not line:
            continue
        if "wage" not in out and (_WAGE.match(line) or "내규" in line):
            out["wage"] = line
        elif _HOURS.match(line):
            out["work_hours"] = line
        elif line.startswith(("정규", "비정규", "시간")) or _DAYS.search(line):
            kind = line.split()[0]
            if kind.startswith("비정규"):
                out["employment_type_name"] = "기타"  # the list does not say which kind
            elif kind.startswith("정규"):
                out["employment_type_name"] = "정규직"
            elif kind.startswith("시간"):
                out["employment_type_name"] = "시간제"
            m = _DAYS.search(line)
            if m:
                out["holiday_type"] = f"주{m.group(1)}일근무"
    return out


def dates(text: str) -> dict[str, str]:
    """registered_on and closes_on from "24/03/26 등록\\n24/04/19 마감"."""
    out: dict[str, str] = {}
    for value, kind in _DATE.findall(text):
        out["registered_on" if kind == "등록" else "closes_on"] = value
    return out


UNPACKERS = {
    "career_education_region": career_education_region,
    "conditions": conditions,
    "dates": dates,
}
