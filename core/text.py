"""Text from outside made safe for the places it ends up: e-mail headers, subjects, logs.

A value typed by a customer or a CRM (a contact's name, a ticket subject) may carry CR or LF
(which would start a new header), other C0/C1 control characters, or Unicode bidirectional
overrides and isolates (U+202A-U+202E, U+2066-U+2069) that make "txt.exe" read as "exe.txt"
(CVE-2021-42574, "Trojan Source"). RFC 5322 section 2.2 allows no CR or LF inside a header
field body; these functions drop what is unsafe instead of failing a send for ever.
"""

from __future__ import annotations

import re
import unicodedata

# Bidi embedding, override and isolate controls, and the invisible marks that go with them.
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")
# Zero-width characters that hide text (and words inside URLs) from a reader.
INVISIBLE = frozenset("\u200b\u200c\u200d\u2060\ufeff")
_URL = re.compile(r"(?i)\b((?:https?|ftp)://|www\.)([^\s<>\"']+)")


def unsafe_characters(value: str) -> list[str]:
    """The characters of `value` that may not go into a header, as U+XXXX names (empty: safe)."""
    found = []
    for ch in value:
        if ch in BIDI_CONTROLS or ch in INVISIBLE or (unicodedata.category(ch) == "Cc"):
            name = f"U+{ord(ch):04X}"
            if name not in found:
                found.append(name)
    return found


def header_safe(value: str, max_length: int | None = None) -> str:
    """`value` on one line for an e-mail header or a log: CR, LF and tabs become spaces, other
    control characters, bidi overrides and zero-width characters are dropped, runs of white space
    become one space; cut to `max_length` characters (with an ellipsis) when given."""
    out = []
    for ch in value:
        if ch in BIDI_CONTROLS or ch in INVISIBLE:
            continue
        if unicodedata.category(ch) == "Cc":
            if ch in "\r\n\t\v\f\x85":
                out.append(" ")
            continue
        if ch in "\u2028\u2029":  # line and paragraph separators
            out.append(" ")
            continue
        out.append(ch)
    text = " ".join("".join(out).split())
    if max_length is not None and len(text) > max_length:
        text = text[: max(0, max_length - 1)].rstrip() + "\u2026"
    return text


def defang_urls(value: str) -> str:
    """Links made unclickable, the way security teams quote them: `https://evil.example/x`
    becomes `hxxps://evil[.]example/x`, `www.evil.example` becomes `www[.]evil[.]example`.
    For text from outside that lands in a subject line, where mail clients turn URLs into links."""

    def defang(match: re.Match) -> str:
        scheme, rest = match.group(1), match.group(2)
        host, sep, path = rest.partition("/")
        host = host.replace(".", "[.]")
        if scheme.lower().startswith("www."):
            return "www[.]" + host + sep + path
        scheme = re.sub(r"(?i)^http", lambda m: "hxxp" if m.group(0) == "http" else "HXXP", scheme)
        scheme = re.sub(r"(?i)^ftp", "fxp", scheme)
        return scheme + host + sep + path

    return _URL.sub(defang, value)


def error_message(err: dict) -> str:
    """A pydantic error's message for a person: `err["msg"]` without the "Value error, " or
    "Assertion failed, " that pydantic puts before a validator's own words."""
    return err["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
