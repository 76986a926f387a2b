"""The text W-BERT (and the lexical half) sees for a posting: :func:`posting_text`."""

from __future__ import annotations

import re
from collections.abc import Mapping

# Worknet descriptions are sectioned ("■ 주요업무", "<복리후생>", "[자격요건]"). Sections about
# the job are kept; pay, hours, benefits, procedure and notices are the same for every
# occupation and would pull neighbours towards "same benefits" instead of "same job".
_HEADER = re.compile(
    r"^[○■□●◆◇▶<\[【(]?\s*(담당\s*업무|주요\s*업무|직무\s*내용|업무\s*내용|모집\s*분야|자격\s*요건|"
    r"지원\s*자격|우대\s*사항|근무\s*조건|복리\s*후생|근무\s*환경|전형\s*방법|채용\s*절차|접수\s*방법|"
    r"제출\s*서류|기타\s*사항|기타|회사\s*소개|기업\s*소개|유의\s*사항)\s*[>\]】)]?\s*:?$"
)
_KEEP_SECTIONS = re.compile(r"담당|주요|직무|업무|모집|자격|우대")
_BULLET = re.compile(r"^[\s\-*ㆍ·•○■□●◆◇▶▷►✔✓>]+")
_DROP_LINE = re.compile(
    r"^※|^\[[^\]]*안내\]|^(학력|경력|근무\s*시간|근무\s*요일|근무\s*형태|급여|임금|연봉|시급|"
    r"고용\s*형태|근무\s*지역|근무지)\s*[:：]|채용\s*절차|이력서|자기\s*소개서|개별\s*연락|입사\s*지원|"
    r"부정\s*수급|실업\s*급여|구직\s*급여|조기\s*마감|\[전화번호\]|\[이메일\]|\[URL\]"
)
# A benefits list outside its section ("중식 제공, 경조사비 지원, 유니폼 지급"); two hits are
# required because a single one can be a duty (경리: "급여 계산 및 4대보험 신고").
_BENEFIT = re.compile(
    r"4대\s*보험|퇴직금|중식|석식|경조사|유니폼|통근\s*버스|기숙사|주차|상여금|명절|연차|휴가|식대|"
    r"복지|건강\s*검진|자기\s*계발비|야근\s*수당"
)
_TITLE_TAGS = re.compile(r"\[[^\]]{0,20}\]|\([^)]{0,20}\)|<[^>]{0,20}>")
_WS = re.compile(r"\s+")
MAX_TEXT_CHARS = 600


def posting_text(row: Mapping) -> str:
    """The text W-BERT sees for a posting: title, job sections of the description, certificates.

    Title tags such as ``[성북]`` or ``(경력무관)`` are dropped, as are the description's pay,
    hours, benefits, procedure and notice sections and lines (same for every occupation); the
    result is capped at ``MAX_TEXT_CHARS`` characters, title first.
    """
    title = _WS.sub(" ", _TITLE_TAGS.sub(" ", str(row.get("title") or ""))).strip()
    parts = [title] if title else []
    seen = {title}
    keep = True  # text before the first header is the job summary
    for raw in str(row.get("description") or "").splitlines():
        ln = _WS.sub(" ", raw).strip()
        if not ln:
            continue
        head = _HEADER.match(ln)
        if head:
            keep = bool(_KEEP_SECTIONS.search(head.group(1)))
            continue
        ln = _BULLET.sub("", ln).strip()
        if not keep or len(ln) < 2 or ln in seen or _DROP_LINE.search(ln):
            continue
        if len(_BENEFIT.findall(ln)) >= 2:
            continue
        seen.add(ln)
        parts.append(ln)
    for extra in ("certificates", "major"):
        v = row.get(extra)
        if v:
            v = _WS.sub(" ", str(v)).strip()
            if v and v not in seen:
                parts.append(v)
    return " . ".join(parts)[:MAX_TEXT_CHARS]


