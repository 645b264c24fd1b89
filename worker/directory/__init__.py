"""The prescriber directory: NPI → taxonomies, entity type and deactivation, from the NPPES file.

``build_index`` writes a compact memory-mapped index from an NPPES file (``worker.directory.nppes``);
``Directory.open(path).facts(npi, date_of_service)`` answers ``ProviderFacts``; ``DirectoryUpdates`` follows
the compacted updates topic and overlays it. See docs/directory.md.
"""

from __future__ import annotations

from worker.directory.builder import build_index
from worker.directory.index import Directory, Entry, status_of
from worker.directory.layout import DirectoryIndexError
from worker.directory.nppes import NppesFormatError, NppesRecord, read_nppes

__all__ = [
    "Directory",
    "DirectoryIndexError",
    "Entry",
    "NppesFormatError",
    "NppesRecord",
    "build_index",
    "read_nppes",
    "status_of",
]
