"""PII scrubbing of résumé text (자기소개): what :func:`core.text.scrub_pii` does, and more.

A posting's text names a company; a résumé names a person. Besides phone numbers, e-mail
addresses and URLs, :func:`scrub_resume` replaces 주민등록번호-shaped numbers, street
addresses (road-name and lot-number forms, apartment 동/호) and personal names: the
seeker's own name when the source gives it, and names in the places résumés put them
("이름: 홍길동", "저는 홍길동입니다", "홍길동 드림"). Idempotent; other text is unchanged.
"""

from __future__ import annotations

import re

from core.text import clean_text, scrub_pii

NAME = "[이름]"
RRN = "[주민번호]"
ADDRESS = "[주소]"

# YYMMDD-Gxxxxxx (G = 1..8 for people born in 1800s..2000s, foreigners 5..8)
_RRN_RE = re.compile(r"(?<!\d)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\s?[-–]?\s?[1-8]\d{6}(?!\d)")
# a number that is a count, duration, age or amount rather than a building number
_NOT_BUILDING = r"(?!\d)(?!\s*(?:년|개월|살|세|명|시간|시|분|회|월|일|%|만|천|원|차|위|등|급|kg|톤|대|개|건|번(?!지)|층))"
_ROAD_RE = re.compile(
    r"[가-힣A-Za-z0-9]{1,20}(?:대로|로|길)\s?\d+(?:번길|가길|길)?(?:\s?\d+(?:-\d+)?)?" + _NOT_BUILDING
    + r"(?:\s?,?\s?\d+동)?(?:\s?\d+호)?(?:\s?\d+층)?"
)
_LOT_RE = re.compile(r"[가-힣]{1,10}(?:동|리|가)\s?\d+(?:-\d+|\s?번지)(?:\s?\d+호)?")
_UNIT_RE = re.compile(r"(?<!\d)\d{1,4}동\s?\d{1,4}호")
# names where résumés put them; surnames keep the pattern away from ordinary words
_SURNAMES = (
    "김이박최정강조윤장임한오서신권황안송류유전홍고문양손배백허남심노하곽성차주우구민진지엄채원천방공현함변염"
    "여추도소석선설마길연위표명기반왕금옥육인맹제모탁국어은편용예경봉사부"
)
_NAME_BODY = rf"[{_SURNAMES}][가-힣]{{1,3}}"
_LABELLED = re.compile(rf"((?:이름|성명|작성자|지원자)\s*[:：]?\s*)({_NAME_BODY})(?![가-힣])")
_SELF = re.compile(rf"(저는\s*|제\s*이름은\s*)({_NAME_BODY})(?=입니다|이라고|라고|이며|이고)")
# words that follow 저는 as often as names do ("저는 신입입니다")
_NOT_NAMES = frozenset({"신입", "경력", "경력직", "주부", "학생", "성실", "전문가", "구직자", "여성", "남성",
                        "고졸", "대졸", "초보", "은퇴자", "장애인", "어르신", "기능공", "기술자"})
_SIGNED = re.compile(rf"(?<![가-힣])({_NAME_BODY})(\s*(?:드림|올림|배상))")
_PII_HINT = re.compile(r"\d|이름|성명|작성자|지원자|저는|제\s*이름|드림|올림|배상")


def scrub_resume(text: str | None, *, names: tuple[str, ...] = ()) -> str:
    """Cleaned résumé text with contact details, 주민등록번호, addresses and names replaced.

    ``names``: the seeker's own name(s) from the source record; every occurrence is replaced.
    """
    s = scrub_pii(clean_text(text))
    if not s:
        return ""
    for name in names:
        name = (name or "").strip()
        if len(name) >= 2:
            s = s.replace(name, NAME)
    if not _PII_HINT.search(s):
        return s
    s = _RRN_RE.sub(RRN, s)
    s = _ROAD_RE.sub(ADDRESS, s)
    s = _LOT_RE.sub(ADDRESS, s)
    s = _UNIT_RE.sub(ADDRESS, s)
    s = _LABELLED.sub(lambda m: m.group(1) + NAME, s)
    s = _SELF.sub(lambda m: m.group(0) if m.group(2) in _NOT_NAMES else m.group(1) + NAME, s)
    s = _SIGNED.sub(lambda m: NAME + m.group(2), s)
    return s
