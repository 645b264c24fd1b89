"""NDC normalisation: every accepted spelling of an NDC read as 11-digit 5-4-2 candidates."""

from __future__ import annotations

__all__ = ["ndc_candidates", "product_key"]

# Segment lengths of a hyphenated NDC -> which segment gets the leading zero (docs/policy.md §1).
_PAD_SEGMENT: dict[tuple[int, int, int], int | None] = {
    (5, 4, 2): None,
    (4, 4, 2): 0,
    (5, 3, 2): 1,
    (5, 4, 1): 2,
}
_NDC11 = 11
_NDC10 = 10


def _ten_digit_readings(digits: str) -> tuple[tuple[str, str], ...]:
    """Return the three paddings of an unhyphenated 10-digit NDC: the digits alone cannot say which."""
    return (
        ("0" + digits, "10-digit read as 4-4-2"),
        (digits[:5] + "0" + digits[5:], "10-digit read as 5-3-2"),
        (digits[:9] + "0" + digits[9], "10-digit read as 5-4-1"),
    )


def ndc_candidates(product_id: str) -> tuple[tuple[str, str], ...]:
    """Read a Product/Service ID (407-D7) as an NDC.

    Takes the submitted ID and returns ``(ndc11, form)`` pairs, where ``ndc11`` is 11 digits with no
    hyphens and ``form`` names how the input was read. 11 digits (plain or hyphenated 5-4-2) and
    hyphenated 4-4-2 / 5-3-2 / 5-4-1 give one candidate. An unhyphenated 10-digit ID gives three,
    one per padding, because it is ambiguous. Any other hyphenation is read by its digits alone.
    Returns ``()`` when the ID is not 10 or 11 digits. Never raises.
    """
    if len(product_id) == _NDC11 and product_id.isdigit():
        return ((product_id, "11-digit"),)
    parts = product_id.split("-")
    if len(parts) == 3 and all(part.isdigit() for part in parts):  # noqa: PLR2004 - three NDC segments
        shape = (len(parts[0]), len(parts[1]), len(parts[2]))
        if shape in _PAD_SEGMENT:
            pad = _PAD_SEGMENT[shape]
            if pad is not None:
                parts[pad] = "0" + parts[pad]
            return (("".join(parts), "{}-{}-{} hyphenated".format(*shape)),)
    digits = product_id.replace("-", "")
    if not digits.isdigit():
        return ()
    if len(digits) == _NDC11:
        return ((digits, "11-digit"),)
    if len(digits) == _NDC10:
        return _ten_digit_readings(digits)
    return ()


def product_key(ndc11: str) -> str:
    """Return the 9-digit labeler+product part of an 11-digit NDC, which names the product."""
    return ndc11[:9]
