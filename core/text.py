"""Text cleaning and PII scrubbing for posting text.

:func:`clean_text` turns Worknet's HTML-ish fields into plain text; :func:`scrub_pii`
replaces phone numbers, e-mail addresses and URLs with placeholders. Both are idempotent,
and digits that are not contact details (wages, dates, times, zip codes) stay as written.
"""

from __future__ import annotations

import html
import re
import unicodedata

PHONE = "[전화번호]"
EMAIL = "[이메일]"
URL = "[URL]"

_TAG_BREAK = re.compile(r"<\s*(?:br|/p|p|/div|div|li|/li|tr|/tr|/h\d)\b[^>]*>", re.IGNORECASE)
_TAG = re.compile(r"<!--.*?-->|</?[a-zA-Z][^<>]*>", re.DOTALL)
_ENTITY = re.compile(r"&(?:#\d+|#x[0-9a-fA-F]+|[a-zA-Z]{2,8});")
# horizontal white space and control characters both become one space
_SPACES = re.compile(r"[ \t\f\v\u00a0\u2000-\u200b\u3000\ufeff\x00-\x08\x0e-\x1f\x7f]+")
_LINE_BREAKS = re.compile(r" ?\n[ \n]*")
_NEEDS_CLEANING = re.compile(
    r"[&<\r\n\t\f\v\x00-\x08\x0e-\x1f\x7f\u00a0\u2000-\u200b\u3000\ufeff]|  |^ | $"
)

_EMAIL_RE = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+")
_URL_RE = re.compile(
    r"(?:https?://|www\.)[^\s<>\"'()\[\]]+"
    # bare domains: "work24.go.kr/...", "example.com"
    r"|(?<![\w@.])[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9\-]+)*"
    r"\.(?:com|net|org|kr|io|co|biz|info)\b(?:/[^\s<>\"'()\[\]]*)?",
    re.IGNORECASE,
)
_SEP = r"[\-.\s]?"
_AREA = r"(?:1[016789]|2|[3-6][1-5]|70|50\d?|80)"  # mobile, Seoul, regional, VoIP codes
_PHONE_RE = re.compile(
    r"(?<![\d\-])(?:"
    # +82 10-1234-5678, +82-2-123-4567 (international: the trunk 0 is dropped)
    r"\+\s?82[\-.\s]?(?:\(0\)\s?)?0?" + _AREA + r"[\-.)\s]?\d{3,4}" + _SEP + r"\d{4}"
    # 010-1234-5678, 02)123-4567, (031) 123-4567, 070.1234.5678
    r"|(?:\(0" + _AREA + r"\)\s?|0" + _AREA + r"[\-.)\s]\s?)\d{3,4}[\-.\s]\d{4}"
    # 01012345678: mobile numbers are often written without separators
    r"|01[016789]\d{7,8}"
    # 1588-1234, 1644 1234: nationwide service numbers (a separator is required so that
    # amounts such as 15000000 are left alone)
    r"|1[5-9]\d{2}[\-.\s]\d{4}"
    r")(?![\d\-])"
)
_PII_HINT = re.compile(r"[@\d]|www|http|\.(?:com|net|org|kr|io|co|biz|info)\b", re.IGNORECASE)


def clean_text(s: str | None) -> str:
    """Strip HTML markup and entities, normalise Unicode (NFC) and whitespace.

    Line breaks (including ``<br>``, ``</p>``) are kept as single newlines; blank lines and
    surrounding spaces are dropped. ``None`` gives ``""``.
    """
    if not s:
        return ""
    if not _NEEDS_CLEANING.search(s) and unicodedata.is_normalized("NFC", s):
        return s  # the common case for short fields: nothing to do
    # entities may be escaped twice ("&amp;lt;br&amp;gt;"), then hide markup
    for _ in range(3):
        if "&" not in s:
            break
        unescaped = html.unescape(s)
        if unescaped == s:
            break
        s = unescaped
    if "<" in s:
        s = _TAG_BREAK.sub("\n", s)
        s = _TAG.sub(" ", s)
    if not unicodedata.is_normalized("NFC", s):
        s = unicodedata.normalize("NFC", s)
    if "\r" in s:
        s = s.replace("\r\n", "\n").replace("\r", "\n")
    s = _SPACES.sub(" ", s)
    # strip every line and drop blank ones, in one pass
    return _LINE_BREAKS.sub("\n", s).strip(" \n")


def scrub_pii(s: str | None) -> str:
    """Replace phone numbers, e-mail addresses and URLs with placeholders.

    ``[전화번호]``, ``[이메일]`` and ``[URL]``; other text and numbers are unchanged.
    """
    if not s:
        return ""
    if not _PII_HINT.search(s):
        return s
    # A replacement can expose a new match next to it ("0.krwww.x" -> "0.kr[URL]", whose
    # "0.kr" now ends at a word boundary), so substitute until nothing changes: that makes
    # the function idempotent. Placeholders never match, so this ends within a few passes.
    while True:
        t = _EMAIL_RE.sub(EMAIL, s) if "@" in s else s
        t = _PHONE_RE.sub(PHONE, _URL_RE.sub(URL, t))
        if t == s:
            return t
        s = t


def clean_and_scrub(s: str | None) -> str:
    """:func:`clean_text` then :func:`scrub_pii`: what every stored text column gets."""
    return scrub_pii(clean_text(s))
