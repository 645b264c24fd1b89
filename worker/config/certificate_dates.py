"""The validity dates of the worker's own client certificate, read from its PEM file (no TLS library).

A broker refuses an expired client certificate with a bare handshake failure; the worker reads the
dates of the certificate it was given, so that the operator's line says "expired on ..." instead.
Only the first certificate of the file is read (the leaf; a chain may follow). X.509 (RFC 5280 4.1):
Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL, serialNumber, signature,
issuer, validity SEQUENCE { notBefore Time, notAfter Time }, ... }, ... }, Time being UTCTime
(YYMMDDHHMMSSZ, years 1950-2049) or GeneralizedTime (YYYYMMDDHHMMSSZ).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["Validity", "certificate_validity"]

_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----\s+(.+?)\s+-----END CERTIFICATE-----", re.DOTALL)
_SEQUENCE, _VERSION, _UTC_TIME, _GENERALIZED_TIME = 0x30, 0xA0, 0x17, 0x18
_LONG_LENGTH = 0x80
_UTC_CENTURY_SPLIT = 50  # RFC 5280 4.1.2.5.1: YY >= 50 is 19YY, else 20YY


@dataclass(frozen=True, slots=True)
class Validity:
    """When a certificate may be used: ``not_before`` to ``not_after``, both UTC."""

    not_before: datetime
    not_after: datetime


def _tlv(data: bytes, at: int) -> tuple[int, int, int]:
    """Return (tag, start of the value, end of the value) of the DER element at ``at``."""
    tag, length = data[at], data[at + 1]
    start = at + 2
    if length & _LONG_LENGTH:
        size = length & ~_LONG_LENGTH
        length = int.from_bytes(data[start : start + size], "big")
        start += size
    end = start + length
    if end > len(data):
        raise ValueError("truncated DER element")
    return tag, start, end


def _time(tag: int, text: str) -> datetime:
    if tag == _UTC_TIME:
        year = int(text[:2])
        text = f"{19 if year >= _UTC_CENTURY_SPLIT else 20}{text}"
    elif tag != _GENERALIZED_TIME:
        raise ValueError("not a time")
    return datetime.strptime(text, "%Y%m%d%H%M%SZ").replace(tzinfo=UTC)


def _validity(der: bytes) -> Validity:
    _, cert, _ = _tlv(der, 0)
    tag, tbs, _ = _tlv(der, cert)
    if tag != _SEQUENCE:
        raise ValueError("no tbsCertificate")
    at = tbs
    tag, _, end = _tlv(der, at)
    if tag == _VERSION:
        at = end
    for _skipped in ("serialNumber", "signature", "issuer"):
        _, _, at = _tlv(der, at)
    tag, start, _ = _tlv(der, at)
    if tag != _SEQUENCE:
        raise ValueError("no validity")
    before_tag, before_start, before_end = _tlv(der, start)
    after_tag, after_start, after_end = _tlv(der, before_end)
    return Validity(
        _time(before_tag, der[before_start:before_end].decode("ascii")),
        _time(after_tag, der[after_start:after_end].decode("ascii")),
    )


def certificate_validity(path: Path) -> Validity | None:
    """Return the validity of the first certificate in the PEM file ``path``; ``None`` if it cannot be read.

    ``None`` means "cannot tell" (no file, no PEM certificate, an encoding this reader does not know):
    the TLS library then has the last word, as before.
    """
    try:
        match = _PEM.search(path.read_bytes())
        if match is None:
            return None
        return _validity(base64.b64decode(match[1], validate=False))
    except (OSError, ValueError, IndexError, binascii.Error, UnicodeDecodeError):
        return None
