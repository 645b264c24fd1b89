"""Product/Service ID normalisation: every accepted spelling of an NDC read as 11-digit 5-4-2 candidates."""

from __future__ import annotations

import re

from worker.contracts.codes import ProductReading

__all__ = ["hcpcs_code", "ndc_candidates", "product_key"]

# Segment lengths of a hyphenated NDC -> which segment gets the leading zero (docs/policy.md §1).
_PAD_SEGMENT: dict[tuple[int, int, int], tuple[int | None, ProductReading]] = {
    (5, 4, 2): (None, ProductReading.NDC_5_4_2_HYPHENATED),
    (4, 4, 2): (0, ProductReading.NDC_4_4_2_HYPHENATED),
    (5, 3, 2): (1, ProductReading.NDC_5_3_2_HYPHENATED),
    (5, 4, 1): (2, ProductReading.NDC_5_4_1_HYPHENATED),
}
_NDC11 = 11
_NDC10 = 10
# HCPCS Level II: one letter and four digits (J9207 = ixabepilone, per 1 mg; docs/policy.md §1).
_HCPCS = re.compile(r"^[A-V][0-9]{4}$")


def _ten_digit_readings(digits: str) -> tuple[tuple[str, ProductReading], ...]:
    """Return the three paddings of an unhyphenated 10-digit NDC: the digits alone cannot say which."""
    return (
        ("0" + digits, ProductReading.NDC_10_DIGIT_AS_4_4_2),
        (digits[:5] + "0" + digits[5:], ProductReading.NDC_10_DIGIT_AS_5_3_2),
        (digits[:9] + "0" + digits[9], ProductReading.NDC_10_DIGIT_AS_5_4_1),
    )


def ndc_candidates(product_id: str) -> tuple[tuple[str, ProductReading], ...]:
    """Read a Product/Service ID (407-D7) as an NDC.

    Takes the submitted ID and returns ``(ndc11, reading)`` pairs, where ``ndc11`` is 11 digits with
    no hyphens and ``reading`` names how the input was read. 11 digits (plain or hyphenated 5-4-2)
    and hyphenated 4-4-2 / 5-3-2 / 5-4-1 give one candidate. An unhyphenated 10-digit ID gives three,
    one per padding, because it is ambiguous. Any other hyphenation is read by its digits alone.
    Returns ``()`` when the ID is not 10 or 11 digits. Never raises.
    """
    if len(product_id) == _NDC11 and product_id.isdigit():
        return ((product_id, ProductReading.NDC_11_DIGIT),)
    parts = product_id.split("-")
    if len(parts) == 3 and all(part.isdigit() for part in parts):  # noqa: PLR2004 - three NDC segments
        shape = (len(parts[0]), len(parts[1]), len(parts[2]))
        if shape in _PAD_SEGMENT:
            pad, reading = _PAD_SEGMENT[shape]
            if pad is not None:
                parts[pad] = "0" + parts[pad]
            return (("".join(parts), reading),)
    digits = product_id.replace("-", "")
    if not digits.isdigit():
        return ()
    if len(digits) == _NDC11:
        return ((digits, ProductReading.NDC_11_DIGIT),)
    if len(digits) == _NDC10:
        return _ten_digit_readings(digits)
    return ()


def hcpcs_code(product_id: str) -> str | None:
    """Return the Product/Service ID as an upper-case HCPCS Level II code, or ``None`` if it is not one."""
    code = product_id.strip().upper()
    return code if _HCPCS.match(code) else None


def product_key(ndc11: str) -> str:
    """Return the 9-digit labeler+product part of an 11-digit NDC, which names the product."""
    return ndc11[:9]
