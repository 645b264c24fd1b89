r"""Escape text for an operator's terminal: nothing a sender writes may move the cursor or retitle it.

Record content (claim ids, reasons, summaries, dead-letter keys, a store's revocation reason, NPPES
names) reaches the command-line tools from topics and files that others write. A terminal acts on
control characters (ESC and CSI sequences, OSC title sequences ending in BEL, CR, backspace), and
format characters (bidi overrides, zero-width) make one id look like another. Every character that
``str.isprintable`` refuses (Unicode categories Cc, Cf, Cs, Co, Cn, Zl, Zp and Zs but the ASCII space)
is written as a JSON-style ``\uXXXX`` escape (a UTF-16 pair above U+FFFF), so JSON printed through it
stays valid JSON with the same value. A backslash is printed as it is: an escape in the output may be
the sender's own text, never a character the terminal acted on (docs/operations.md, "Terminal output").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import TextIO

__all__ = ["echo", "printable", "printable_lines"]

_BMP_END = 0x10000


def _escape(char: str) -> str:
    r"""Return the JSON-style escape of one character (``\u001b``; a surrogate pair above the BMP)."""
    code = ord(char)
    if code < _BMP_END:
        return f"\\u{code:04x}"
    code -= _BMP_END
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def printable(text: object) -> str:
    """Return ``str(text)`` as one line a terminal only shows: every unprintable character escaped.

    Newlines and tabs are escaped too, so a value cannot start a row of its own in a table.
    """
    value = str(text)
    if value.isprintable():
        return value
    return "".join(char if char.isprintable() else _escape(char) for char in value)


def printable_lines(text: object) -> str:
    r"""Return ``str(text)`` keeping its own ``\n`` line breaks, every other unprintable character escaped."""
    return "\n".join(printable(line) for line in str(text).split("\n"))


def echo(text: object = "", *, file: TextIO | None = None) -> None:
    """Print ``text`` through ``printable_lines`` to ``file`` (default stdout): the CLI's one printer."""
    print(printable_lines(text), file=file)
