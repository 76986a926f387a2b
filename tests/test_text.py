"""Text cleaning and PII scrubbing."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from core.text import EMAIL, PHONE, URL, clean_and_scrub, clean_text, scrub_pii


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("- 대기오염 측정&lt;br&gt;- 보고서 작성", "- 대기오염 측정\n- 보고서 작성"),
        ("<p>첫 줄</p><p>둘째 줄</p>", "첫 줄\n둘째 줄"),
        ("보고서 &amp;amp; 발표", "보고서 & 발표"),  # escaped twice
        ("<b>우대</b>&nbsp;사항", "우대 사항"),
        ("  여러   칸\t\t공백  \r\n\r\n\r\n다음 줄 ", "여러 칸 공백\n다음 줄"),
        ("경력 <3년> 이상, 1 < 2", "경력 <3년> 이상, 1 < 2"),  # not markup
        ("<!-- 주석 -->본문<br/>끝", "본문\n끝"),
        ("&#54620;&#xae00;", "한글"),
        ("\u1112\u1161\u11ab", "한"),  # NFD jamo from a Mac export -> NFC
        (None, ""),
        ("", ""),
    ],
)
def test_clean_text(raw, clean):
    assert clean_text(raw) == clean


@pytest.mark.parametrize(
    "phone",
    [
        "010-1234-5678",
        "010 1234 5678",
        "010.1234.5678",
        "01012345678",
        "02)123-4567",
        "02-123-4567",
        "(02) 1234-5678",
        "031-123-4567",
        "(031) 123-4567",
        "031)123-4567",
        "070-1234-5678",
        "0505-123-4567",
        "1588-1234",
        "1644 5678",
        "+82 10-1234-5678",
        "+82-2-345-6789",
        "+82 (0)10 1234 5678",
        "+821012345678",
    ],
)
def test_phone_numbers_are_scrubbed(phone):
    text = f"문의는 {phone} 로 주세요"
    assert scrub_pii(text) == f"문의는 {PHONE} 로 주세요"
    assert scrub_pii(f"(연락처 {phone})") == f"(연락처 {PHONE})"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hr@hanbit-env.co.kr 로 지원", f"{EMAIL} 로 지원"),
        ("메일: kim.cs+jobs@naver.com.", f"메일: {EMAIL}."),
        ("https://www.work24.go.kr/wk/a?b=1&c=2 참조", f"{URL} 참조"),
        ("홈페이지 http://hanbit.co.kr", f"홈페이지 {URL}"),
        ("www.saramin.co.kr/zf_user 에서", f"{URL} 에서"),
        ("자세히는 hanbit.com/recruit", f"자세히는 {URL}"),
        ("(www.example.kr)", f"({URL})"),
    ],
)
def test_emails_and_urls_are_scrubbed(text, expected):
    assert scrub_pii(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "월급 2,500,000원 ~ 3,000,000원",
        "연봉 3000만원, 시급 10,030원, 15000000원",
        "등록 25-11-20, 마감 2025-11-20, 2025.12.31, 20251120",
        "근무시간 09:00~18:00, 10:00-19:00",
        "우편번호 06236, 사업자번호 1234567890, 도로명코드 411903000000",
        "주 5일 근무, 2명 채용, 3층 (상현동), 동일로174길 13",
        "자격: 정보처리기사 1급, 토익 800점 이상, Python 3.11",
        "지원자 1588 명 중 1234 명 합격",
    ],
)
def test_other_digits_are_kept(text):
    assert scrub_pii(text) == text


def test_clean_and_scrub_combined():
    raw = "문의&lt;br&gt;전화: 010-1234-5678<br>메일: a@b.co.kr<br>홈: www.a.co.kr"
    assert clean_and_scrub(raw) == f"문의\n전화: {PHONE}\n메일: {EMAIL}\n홈: {URL}"


_ALPHABET = st.sampled_from(
    list("가나다라 마바사0123456789-.)(@:/,~ \n") + ["<br>", "&amp;", "&lt;", "www.", "http://", ".kr", "010"]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_ALPHABET, max_size=40).map("".join))
@example("0.krwww.가")  # a replaced URL used to expose a bare domain to the second pass
def test_idempotent(text):
    once = clean_and_scrub(text)
    assert clean_and_scrub(once) == once
    assert clean_text(clean_text(text)) == clean_text(text)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["010", "011", "016", "019"]),
    st.integers(1000, 9999),
    st.integers(0, 9999),
    st.sampled_from(["-", " ", "."]),
)
def test_no_mobile_number_survives(prefix, mid, last, sep):
    text = f"담당자 {prefix}{sep}{mid}{sep}{last:04d} 입니다"
    out = scrub_pii(text)
    assert not re.search(r"\d{4}", out), out
