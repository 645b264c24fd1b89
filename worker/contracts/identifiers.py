"""What a clean identifier is: printable text without control, format, private-use or separator characters.

Claim ids, event ids, Rx numbers, original claim ids, service provider ids, PA request ids and record
keys are printed to operators and written as Kafka keys; a character that moves a terminal's cursor,
reorders text (bidi overrides) or is invisible makes one id look like another (docs/policy.md, "Clean
identifiers"). An identifier is rejected when it holds a character of Unicode category Cc (C0, C1
controls, DEL), Cf (format: bidi overrides, zero-width), Cs (surrogates), Co (private use), Cn
(unassigned), Zl or Zp (line, paragraph separators) or Zs other than the ASCII space; and when it starts
or ends with a space. An ASCII space between other characters is allowed.

The rule is stated twice, each for its hot path: ``IDENTIFIER_PATTERN`` is a pattern for pydantic-core's
Rust regex engine (``Field(pattern=...)``, checked in Rust, no Python call per field), and
``is_clean_identifier`` is the same rule with ``str.isprintable`` (which rejects exactly C*, Z* but the
ASCII space) for text checked in Python (record keys). A test holds the two to the same answer.
"""

from __future__ import annotations

__all__ = ["IDENTIFIER_PATTERN", "is_clean_identifier", "key_is_clean"]

# Rust regex syntax (pydantic-core): \p{C} = Cc|Cf|Cs|Co|Cn, \p{Z} = Zs|Zl|Zp. First and last
# character neither; ASCII spaces only between them.
IDENTIFIER_PATTERN = r"^[^\p{C}\p{Z}](?:\x20*[^\p{C}\p{Z}])*$"


def is_clean_identifier(text: str) -> bool:
    """Tell whether ``text`` is a clean identifier: non-empty, printable, no space at either end."""
    return text.isprintable() and text[:1] not in ("", " ") and text[-1] != " "


def key_is_clean(key: bytes | None) -> bool:
    """Tell whether a Kafka record key is absent, empty, or UTF-8 text that is a clean identifier."""
    if not key:
        return True
    try:
        text = key.decode()
    except UnicodeDecodeError:
        return False
    return is_clean_identifier(text)
