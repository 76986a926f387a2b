"""Revised Romanization of Korean (국어의 로마자 표기법) for matching romanised place names.

Only what place names need: syllable-by-syllable transcription with the sound changes
the official spellings show across syllables (종로 Jongno, 신라 Silla, 백마 Baengma,
강원 Gangwon, 설악 Seorak). :func:`romanise` gives the spelling, :func:`match_key` the
form romanised text is compared in (lower case, letters only), so "Gangnam-gu",
"GANGNAM GU" and "gangnamgu" all meet rr("강남구").
"""

from __future__ import annotations

import re

_INITIALS = ("g", "kk", "n", "d", "tt", "r", "m", "b", "pp", "s", "ss", "", "j", "jj", "ch",
             "k", "t", "p", "h")
_VOWELS = ("a", "ae", "ya", "yae", "eo", "e", "yeo", "ye", "o", "wa", "wae", "oe", "yo", "u",
           "wo", "we", "wi", "yu", "eu", "ui", "i")
# final consonant index (0 = none) -> its sound class before a consonant
_FINALS = ("", "k", "k", "k", "n", "n", "n", "t", "l", "k", "m", "l", "l", "l", "p", "l", "m",
           "p", "p", "t", "t", "ng", "t", "t", "k", "t", "p", "t")
# a final carried onto a following ㅇ-initial syllable (설악 seo-rak, 강원 gang-won)
_CARRY = {1: "g", 2: "kk", 4: "n", 7: "d", 8: "r", 16: "m", 17: "b", 19: "s", 20: "ss", 22: "j",
          23: "ch", 24: "k", 25: "t", 26: "p"}
_NON_LETTER = re.compile(r"[^a-z]")


def _syllables(text: str) -> list[tuple[int, int, int] | str]:
    out: list[tuple[int, int, int] | str] = []
    for ch in text:
        code = ord(ch) - 0xAC00
        if 0 <= code < 11172:
            out.append((code // 588, (code % 588) // 28, code % 28))
        else:
            out.append(ch)
    return out


def _join(final: str, initial: int) -> tuple[str, str]:
    """(final, initial) romanised across a syllable boundary, with the sound changes."""
    ini = _INITIALS[initial]
    if initial == 5:  # ㄹ
        if final in ("l", "n"):
            return "l", "l"  # 신라 Silla, 별래 byeollae
        if final in ("ng", "m"):
            return final, "n"  # 종로 Jongno, 침류 chimnyu
        if final == "k":
            return "ng", "n"  # 석류 seongnyu
        if final == "p":
            return "m", "n"  # 십리 simni
        if final == "t":
            return "n", "n"
        return final, "r"
    if initial in (2, 6):  # ㄴ ㅁ nasalise a preceding stop
        nasal = {"k": "ng", "t": "n", "p": "m"}.get(final, final)
        if final == "l" and initial == 2:
            return "l", "l"  # 별내 Byeollae
        return nasal, ini
    return final, ini


def romanise(text: str) -> str:
    """The Revised Romanization of ``text`` (non-Hangul characters are kept)."""
    parts = _syllables(text)
    out: list[str] = []
    pending = ""  # the previous syllable's final, written once the next initial is known
    for i, p in enumerate(parts):
        if isinstance(p, str):
            out.append(pending + p)
            pending = ""
            continue
        ini, vow, fin = p
        prev = parts[i - 1] if i else None
        if isinstance(prev, tuple) and prev[2]:
            if ini == 11 and prev[2] in _CARRY:  # ㅇ initial takes the final's sound
                head, onset = "", _CARRY[prev[2]]
            else:
                head, onset = _join(_FINALS[prev[2]], ini)
            out.append(head + onset)
        else:
            out.append(pending + _INITIALS[ini])
        pending = ""
        out.append(_VOWELS[vow])
        nxt = parts[i + 1] if i + 1 < len(parts) else None
        if fin and not isinstance(nxt, tuple):
            out.append(_FINALS[fin])
    return "".join(out)


def match_key(text: str) -> str:
    """``text`` lower-cased with everything but a-z removed (hyphens, spaces, apostrophes)."""
    return _NON_LETTER.sub("", text.lower())
