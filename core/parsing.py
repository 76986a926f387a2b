"""Parsers for Worknet field values: education, career, dates, wages, employment type, KECO.

Every parser accepts the Worknet text forms, the canonical values of
:mod:`core.schema` (so canonical CSV/Parquet files load too) and typed values where they
make sense. A value that cannot be read raises :class:`core.errors.InvalidInputError` whose
``field`` names the kind of value (``education``, ``career``, ``date``, ``wage``,
``employment_type``); ingestion turns that into a reject reason.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from functools import cache, lru_cache

from core.errors import InvalidInputError
from core.reference import keco_primary, occupations
from core.schema import CAREER_VALUES, EMPLOYMENT_TYPES, WAGE_TYPES

# -- education ---------------------------------------------------------------------------

MAX_EDUCATION = 7
_EDU_WORDS: dict[str, int] = {
    "학력무관": 0, "무관": 0, "관계없음": 0,
    "초졸이하": 1, "초졸": 1, "초등학교졸업": 1, "초등학교": 1,
    "중졸": 2, "중학교졸업": 2, "중학교": 2,
    "고졸": 3, "고등학교졸업": 3, "고등학교": 3,
    "대졸(2~3년)": 4, "대졸(2-3년)": 4, "대졸(2년)": 4, "대졸(3년)": 4, "초대졸": 4,
    "전문대졸": 4, "전문학사": 4, "전문대": 4,
    "대졸(4년)": 5, "대졸": 5, "학사": 5, "대학교졸업": 5, "대학교": 5,
    "석사": 6, "대학원(석사)": 6,
    "박사": 7, "대학원(박사)": 7,
}
# split "고졸-대졸(4년)" / "고졸~박사" on a dash or tilde that is not inside parentheses
_EDU_SPLIT = re.compile(r"[-~](?![^()]*\))")


def _edu_key(s: str) -> str:
    return re.sub(r"\s+", "", unicodedata.normalize("NFC", s)).replace("～", "~")


@lru_cache(maxsize=65536, typed=True)
def education_level(value: object) -> int:
    """One education level (0..7) from a Worknet label ("대졸(4년)") or a number."""
    if isinstance(value, bool):
        raise InvalidInputError(f"education level {value!r} is not a level", field="education")
    if isinstance(value, int | float):
        if float(value).is_integer() and 0 <= int(value) <= MAX_EDUCATION:
            return int(value)
        raise InvalidInputError(f"education level {value!r} out of range 0..7", field="education")
    key = _edu_key(str(value))
    if key.isdigit() and 0 <= int(key) <= MAX_EDUCATION:
        return int(key)
    if key.endswith("졸업") and key[:-2] in _EDU_WORDS:
        key = key[:-2]
    level = _EDU_WORDS.get(key)
    if level is None:
        raise InvalidInputError(f"unknown education level {value!r}", field="education")
    return level


def education_range(
    min_value: object = None, max_value: object = None, label: object = None
) -> tuple[int, int]:
    """(min, max) education levels from minEdubg/maxEdubg, else the eduNm label.

    An empty maximum means "and above" (7); 학력무관 is 0..7; "고졸" alone is exactly 고졸 and
    "고졸 이상" is 3..7. Nothing given at all reads as 학력무관.
    """
    lo = hi = None
    if not _blank(min_value):
        lo = education_level(min_value)
    if not _blank(max_value):
        hi = education_level(max_value)
    if lo is None and hi is None and not _blank(label):
        lo, hi = _education_label(str(label))
    if lo is None:
        lo = 0
    if hi is None:
        hi = MAX_EDUCATION
    if hi < lo:
        raise InvalidInputError(
            f"maximum education {hi} is below minimum {lo}", field="education"
        )
    return lo, hi


@lru_cache(maxsize=65536)
def _education_label(label: str) -> tuple[int, int]:
    key = _edu_key(label)
    open_up = open_down = False
    if key.endswith("이상"):
        key, open_up = key[:-2], True
    elif key.endswith("이하") and key != "초졸이하":
        key, open_down = key[:-2], True
    parts = [p for p in _EDU_SPLIT.split(key) if p]
    if len(parts) == 1:
        level = education_level(parts[0])
        if level == 0 or open_up:
            return level, MAX_EDUCATION
        if open_down:
            return 0, level
        return level, level
    if len(parts) == 2:
        return education_level(parts[0]), education_level(parts[1])
    raise InvalidInputError(f"unreadable education range {label!r}", field="education")


# -- career ------------------------------------------------------------------------------

_YEARS = re.compile(r"(\d+)\s*년")
_MONTHS = re.compile(r"(\d+)\s*개월")


@lru_cache(maxsize=65536)
def career(value: object) -> tuple[str, int | None]:
    """(career, minimum years or None) from "신입", "경력 (최소3년) 필수", "신입 또는 경력(최소2년)"…

    ``entry`` 신입, ``experienced`` 경력, ``any`` 관계없음 or both 신입 and 경력.
    """
    if _blank(value):
        raise InvalidInputError("career is missing", field="career")
    text = re.sub(r"\s+", "", unicodedata.normalize("NFC", str(value)))
    low = text.lower()
    if low in CAREER_VALUES:
        return low, None
    years: int | None = None
    m = _YEARS.search(text)
    if m:
        years = int(m.group(1))
    else:
        m = _MONTHS.search(text)
        if m:
            years = int(m.group(1)) // 12
    has_new, has_exp = "신입" in text, "경력" in text
    if "관계없음" in text or "무관" in text or (has_new and has_exp):
        kind = "any"
    elif has_new:
        kind, years = "entry", 0
    elif has_exp:
        kind = "experienced"
    else:
        raise InvalidInputError(f"unknown career requirement {value!r}", field="career")
    return kind, years


# -- dates -------------------------------------------------------------------------------

_DATE_PATTERNS = (
    re.compile(r"(?<!\d)(\d{4})[-./](\d{1,2})[-./](\d{1,2})(?!\d)"),  # 2025-11-20
    re.compile(r"(?<!\d)(\d{4})(\d{2})(\d{2})(?:\d{2,6})?(?!\d)"),  # 20251120, 202511201030
    re.compile(r"(?<!\d)(\d{2})[-./](\d{1,2})[-./](\d{1,2})(?!\d)"),  # 25-11-20
    re.compile(r"(?<!\d)(\d{2})(\d{2})(\d{2})(?!\d)"),  # 251120
)
_OPEN_ENDED = ("채용시까지", "상시", "수시", "마감시", "채용시")


def _year(yy: int, ref: dt.date) -> int:
    """The year of a two-digit ``yy`` closest to ``ref`` (within -80/+20 years)."""
    year = ref.year // 100 * 100 + yy
    if year > ref.year + 20:
        year -= 100
    elif year < ref.year - 80:
        year += 100
    return year


def parse_date(value: object, *, ref_date: dt.date | None = None) -> dt.date | None:
    """A date from "25-11-20", "20251120", "2025-11-20", "채용시까지 25-12-20" or a date.

    ``None`` for an empty value or an open-ended one without a date ("채용시까지").
    """
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if _blank(value):
        return None
    text = str(value).strip()
    ref = ref_date or dt.date.today()
    for i, pat in enumerate(_DATE_PATTERNS):
        m = pat.search(text)
        if not m:
            continue
        y, mo, d = (int(g) for g in m.groups())
        if i >= 2:
            y = _year(y, ref)
        try:
            return dt.date(y, mo, d)
        except ValueError:
            raise InvalidInputError(f"impossible date {value!r}", field="date") from None
    if any(word in text.replace(" ", "") for word in _OPEN_ENDED):
        return None
    raise InvalidInputError(f"unreadable date {value!r}", field="date")


# -- wages -------------------------------------------------------------------------------

_WAGE_WORDS: dict[str, str] = {
    "시급": "hourly", "시간급": "hourly",
    "일급": "daily", "일당": "daily",
    "월급": "monthly", "월급여": "monthly", "월": "monthly",
    "연봉": "yearly", "연": "yearly",
}
_WAGE_WORDS_LONGEST_FIRST = tuple(sorted(_WAGE_WORDS, key=len, reverse=True))
_UNDECIDED = ("면접후결정", "회사내규", "협의", "추후협의", "내규에따름", "결정")
_AMOUNT = re.compile(r"(\d[\d,]*(?:\.\d+)?)\s*(억|천만|백만|만|천)?\s*원?")
_UNITS = {None: 1, "천": 1_000, "만": 10_000, "백만": 1_000_000, "천만": 10_000_000, "억": 100_000_000}


def wage_type(value: object) -> str | None:
    """hourly/daily/monthly/yearly from "시급"/"일급"/"월급"/"연봉" (or text starting with one).

    ``None`` for an empty value or "면접 후 결정".
    """
    if _blank(value):
        return None
    text = re.sub(r"\s+", "", str(value))
    if text.lower() in WAGE_TYPES:
        return text.lower()
    for word in _WAGE_WORDS_LONGEST_FIRST:
        if text.startswith(word):
            return _WAGE_WORDS[word]
    if any(word in text for word in _UNDECIDED):
        return None
    raise InvalidInputError(f"unknown wage type {value!r}", field="wage")


def wage_amount(value: object) -> int | None:
    """A KRW amount from "2500000", "2,500,000", "250만원", "1억 2,000만원"; 0/empty → None."""
    if _blank(value):
        return None
    if isinstance(value, bool):
        raise InvalidInputError(f"wage amount {value!r} is not a number", field="wage")
    if isinstance(value, int | float):
        amount = value
    else:
        text = str(value).strip().replace(" ", "")
        if re.fullmatch(r"[\d,]+(?:\.0+)?", text):
            amount = float(text.replace(",", ""))
        else:
            parsed = _korean_amount(text)
            if parsed is None:
                raise InvalidInputError(f"unreadable wage amount {value!r}", field="wage")
            amount = parsed
    if amount != amount or amount < 0:  # NaN or negative
        raise InvalidInputError(f"invalid wage amount {value!r}", field="wage")
    return int(round(amount)) or None


def _korean_amount(text: str) -> int | None:
    """"1억2,000만원" → 120000000; None unless the whole text is an amount."""
    total = 0.0
    pos = 0
    for m in _AMOUNT.finditer(text):
        if m.start() != pos or not m.group(0):
            return None
        total += float(m.group(1).replace(",", "")) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or pos == 0:
        return None
    return int(round(total))


@lru_cache(maxsize=65536)
def wage_from_text(value: object) -> tuple[str | None, int | None, int | None]:
    """(type, min, max) from "월급 250만원 ~ 300만원", "연봉 3,000만원 이상", "시급 10,030원"."""
    if _blank(value):
        return None, None, None
    text = unicodedata.normalize("NFC", str(value)).strip()
    kind = wage_type(text)
    if text.lower() in WAGE_TYPES:
        return kind, None, None
    body = re.sub(r"^\s*(시간급|시급|일급|일당|월급여|월급|연봉|월|연)\s*", "", text)
    body = body.replace(" ", "")
    if not body or any(word in body for word in _UNDECIDED):
        return kind, None, None
    lo = hi = None
    if "~" in body or "∼" in body:
        a, b = re.split(r"[~∼]", body, maxsplit=1)
        lo, hi = _amount_in(a, value), _amount_in(b, value)
    elif body.endswith("이상"):
        lo = _amount_in(body[:-2], value)
    elif body.endswith("이하") or body.endswith("까지"):
        hi = _amount_in(body[:-2], value)
    else:
        lo = hi = _amount_in(body, value)
    return kind, lo, hi


def _amount_in(part: str, whole: object) -> int | None:
    part = part.strip()
    amount = _korean_amount(part) if part else None
    if amount is None:
        raise InvalidInputError(f"unreadable wage {whole!r}", field="wage")
    return amount or None


def wages(
    type_value: object = None,
    min_value: object = None,
    max_value: object = None,
    text: object = None,
) -> tuple[str | None, int | None, int | None]:
    """(wage_type, wage_min, wage_max) from salTpNm, minSal/maxSal and the ``sal`` text.

    The amounts come from minSal/maxSal; when both are empty or 0 they are read from the
    text. Amounts without any wage type, or a minimum above the maximum, are unreadable.
    """
    kind = wage_type(type_value)
    text_kind = text_lo = text_hi = None
    for candidate in (text, type_value):
        if not _blank(candidate):
            text_kind, text_lo, text_hi = wage_from_text(candidate)
            break
    lo, hi = wage_amount(min_value), wage_amount(max_value)
    if lo is None and hi is None:
        lo, hi = text_lo, text_hi
    if kind is None:
        kind = text_kind
    if kind is None and (lo is not None or hi is not None):
        raise InvalidInputError("wage amount given without a wage type", field="wage")
    if lo is not None and hi is not None and lo > hi:
        raise InvalidInputError(f"minimum wage {lo} is above maximum {hi}", field="wage")
    return kind, lo, hi


# -- employment type ---------------------------------------------------------------------

_EMP_CODES: dict[str, str] = {
    "10": "permanent",
    "11": "permanent_part_time",
    "20": "fixed_term",
    "21": "fixed_term_part_time",
    "4": "dispatch",
    "04": "dispatch",
    "3": "daily",
    "03": "daily",
}


def employment_type(code: object = None, name: object = None) -> str:
    """Canonical employment type from Worknet's empTpCd (10/11/20/21/4/3) or empTpNm text.

    Neither given reads as ``other``.
    """
    if not _blank(code):
        c = str(code).strip()
        if c.endswith(".0"):
            c = c[:-2]
        if c in _EMP_CODES:
            return _EMP_CODES[c]
        if c.lower() in EMPLOYMENT_TYPES:
            return c.lower()
        if _blank(name):
            name = c  # a CSV may carry the name in the code column
    if _blank(name):
        return "other"
    text = re.sub(r"\s+", "", str(name))
    if text.lower() in EMPLOYMENT_TYPES:
        return text.lower()
    part_time = "시간(선택)제" in text or "시간제" in text or "파트" in text
    if "파견" in text:
        return "dispatch"
    if "일용" in text:
        return "daily"
    if "정함이없는" in text or "정규직" in text:
        return "permanent_part_time" if part_time else "permanent"
    if "정함이있는" in text or "계약직" in text or "기간제" in text:
        return "fixed_term_part_time" if part_time else "fixed_term"
    if part_time:
        return "fixed_term_part_time"
    if text in ("기타", "other"):
        return "other"
    raise InvalidInputError(f"unknown employment type {name!r}", field="employment_type")


# -- occupations -------------------------------------------------------------------------

_CODE_IN_NAME = re.compile(r"\((\d{6})\)\s*$")
_NAME_NOISE = re.compile(r"[\s·ㆍ•,/]+")
_PARENS = re.compile(r"\([^()]*\)")


def _occ_key(name: str) -> str:
    return _NAME_NOISE.sub("", unicodedata.normalize("NFC", name)).lower()


class OccupationResolver:
    """KECO codes from codes, "name(code)" labels, or names alone.

    Name matching, first hit wins: (1) the normalised name (spaces and ·/, removed) equals
    a KECO name; (2) it equals a KECO name without its parenthesised qualifier, or one of
    the "및"-separated parts of a KECO name; (3) it is contained in KECO names (shortest
    wins) or (4) contains a KECO name (longest wins). A tie between codes resolves to their
    common 4-digit parent code (e.g. 029505/029506 → 029500) when KECO has it, else the
    match is ambiguous and unresolved. Names shorter than 2 characters never fuzzy-match.
    """

    def __init__(self) -> None:
        self._codes = frozenset(occupations())
        self._exact: dict[str, set[str]] = {}
        self._loose: dict[str, set[str]] = {}
        self._names: list[tuple[str, str]] = []
        for row in keco_primary().iter_rows(named=True):
            code, name = row["code"], row["name"]
            key = _occ_key(name)
            self._exact.setdefault(key, set()).add(code)
            self._names.append((key, code))
            base = _occ_key(_PARENS.sub("", name))
            loose = {base} | {_occ_key(p) for p in re.split(r"\s및\s", _PARENS.sub("", name))}
            for k in loose:
                if k:
                    self._loose.setdefault(k, set()).add(code)
        self._cache: dict[str, str | None] = {}

    def is_code(self, code: str) -> bool:
        """True for a six-digit code listed in KECO."""
        return code in self._codes

    def resolve(self, code: object = None, label: object = None) -> str | None:
        """The KECO code for a jobsCd value and/or a jobsNm label; ``None`` when unknown."""
        if not _blank(code):
            c = str(code).strip()
            if c.endswith(".0"):
                c = c[:-2]
            c = c.zfill(6) if c.isdigit() else c
            return c if c in self._codes else None
        if _blank(label):
            return None
        text = unicodedata.normalize("NFC", str(label)).strip()
        m = _CODE_IN_NAME.search(text)
        if m:
            return m.group(1) if m.group(1) in self._codes else None
        if text not in self._cache:
            self._cache[text] = self._by_name(text)
        return self._cache[text]

    def _by_name(self, name: str) -> str | None:
        key = _occ_key(name)
        if not key:
            return None
        for table in (self._exact, self._loose):
            if key in table:
                return self._pick(table[key])
        if len(key) < 2:
            return None
        inside = [(len(k), c) for k, c in self._names if key in k]
        if inside:
            best = min(n for n, _ in inside)
            return self._pick({c for n, c in inside if n == best})
        contains = [(len(k), c) for k, c in self._names if k in key and len(k) >= 2]
        if contains:
            best = max(n for n, _ in contains)
            return self._pick({c for n, c in contains if n == best})
        return None

    def _pick(self, codes: set[str]) -> str | None:
        if len(codes) == 1:
            return next(iter(codes))
        parents = {c[:4] + "00" for c in codes}
        if len(parents) == 1:
            parent = parents.pop()
            if parent in self._codes:
                return parent
        return None


@cache
def default_occupations() -> OccupationResolver:
    """A process-wide :class:`OccupationResolver`."""
    return OccupationResolver()


def _blank(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and value != value:
        return True
    return isinstance(value, str) and not value.strip()
