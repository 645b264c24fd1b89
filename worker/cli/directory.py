"""``claims-worker directory build|publish|show|info``: the prescriber directory's commands.

Exit codes (the worker's, see ``claims-worker --help``): 0 done; 2 bad input (a malformed NPPES row, named
by line; a missing or damaged index; bad arguments or settings); 4 Kafka unreachable (publish).
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from worker.cli.exits import exit_epilog
from worker.directory.builder import build_index
from worker.directory.index import Directory
from worker.directory.layout import MAGIC, DirectoryIndexError
from worker.directory.nppes import NppesFormatError, open_text, read_nppes
from worker.errors import ExitCode
from worker.ops.escaping import echo

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Iterator

    from worker.config.settings import Settings
    from worker.directory.index import Entry

__all__ = ["register"]

_EPILOG = exit_epilog(
    (ExitCode.OK, "done"),
    (
        ExitCode.BAD_SETTINGS,
        (
            "bad input (a malformed NPPES row, named by line; a missing or damaged index;"
            " a missing path or topic)"
        ),
    ),
    (ExitCode.UNREACHABLE, "Kafka unreachable"),
    (ExitCode.NOT_AUTHORIZED, "not authorized (a refused login or a missing ACL)"),
    note="See docs/directory.md.",
)
_RELEASE = re.compile(r"npidata_pfile_(\d{8})-(\d{8})")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``directory`` and its sub-commands to the ``claims-worker`` parser."""
    parser = sub.add_parser(
        "directory",
        help="build, publish and query the prescriber directory (NPPES)",
        epilog=_EPILOG,
    )
    commands = parser.add_subparsers(dest="directory_command", required=True)

    build = commands.add_parser(
        "build", epilog=_EPILOG, help="build the memory-mapped index from an NPPES file"
    )
    build.add_argument("file", type=Path, help="NPPES data dissemination CSV (npidata_pfile_*.csv)")
    build.add_argument("--out", type=Path, help="index to write [default: CLAIMS_DIRECTORY_PATH]")
    _release_arguments(build)
    build.add_argument("--max-errors", type=int, default=0, help="malformed rows to skip before failing")
    build.add_argument("--verify", action="store_true", help="re-open the index and check its SHA-256")
    build.set_defaults(handler=_build)

    publish = commands.add_parser(
        "publish",
        epilog=_EPILOG,
        help="write an NPPES file (or its diff from an older release) to the updates topic",
    )
    publish.add_argument("file", type=Path, help="NPPES CSV or a built index: the newer release")
    publish.add_argument(
        "--since", type=Path, help="NPPES CSV or index of the older release: publish the diff"
    )
    publish.add_argument("--topic", help="updates topic [default: CLAIMS_DIRECTORY_UPDATES_TOPIC]")
    publish.add_argument("--partitions", type=int, default=1, help="partitions when the topic is created")
    publish.add_argument("--replication-factor", type=int, default=1, help="when the topic is created")
    _release_arguments(publish)
    publish.set_defaults(handler=_publish)

    show = commands.add_parser(
        "show", epilog=_EPILOG, help="print what the directory says of NPIs on a date (JSON lines)"
    )
    show.add_argument("npis", nargs="+", help="10-digit NPIs")
    show.add_argument("--index", type=Path, help="index [default: CLAIMS_DIRECTORY_PATH]")
    show.add_argument("--date", type=date.fromisoformat, default=None, help="date of service [today]")
    show.set_defaults(handler=_show)

    info = commands.add_parser(
        "info", epilog=_EPILOG, help="print an index's header (release, build time, counts)"
    )
    info.add_argument("index", type=Path, nargs="?", help="index [default: CLAIMS_DIRECTORY_PATH]")
    info.add_argument("--verify", action="store_true", help="also check the sections' SHA-256")
    info.set_defaults(handler=_info)


def _release_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--release", help="release id [default: nppes-<end date> from the file name]")
    parser.add_argument(
        "--release-date",
        type=date.fromisoformat,
        help="release date, YYYY-MM-DD [default: the end date in the file name, else the file's mtime]",
    )


def release_of(path: Path, release: str | None, release_date: date | None) -> tuple[str, date]:
    """Return the release id and date: as given, else from ``npidata_pfile_<start>-<end>``, else the mtime."""
    match = _RELEASE.search(path.name)
    if match is not None:
        end = datetime.strptime(match.group(2), "%Y%m%d").replace(tzinfo=UTC).date()
        return release or f"nppes-{end:%Y%m%d}", release_date or end
    when = release_date or datetime.fromtimestamp(path.stat().st_mtime, tz=UTC).date()
    return release or f"{path.stem}-{when:%Y%m%d}", when


def _error(message: str) -> int:
    echo(f"error: {message}", file=sys.stderr)
    return 2


def _progress(path: Path, counter: list[int], what: str) -> tuple[Callable[[int], None], Callable[[], None]]:
    """Return ``(update(records), close())`` of a progress bar over the file's bytes; quiet when not a TTY."""
    from tqdm import tqdm  # noqa: PLC0415 - only the build needs it

    bar = tqdm(
        total=path.stat().st_size,
        unit="B",
        unit_scale=True,
        desc=what,
        disable=None,  # None: off when stderr is not a TTY
        mininterval=0.5,
        smoothing=0.1,
    )
    started = time.monotonic()

    def update(records: int) -> None:
        bar.update(counter[0] - bar.n)
        elapsed = max(time.monotonic() - started, 1e-9)
        bar.set_postfix(records=f"{records:,}", rate=f"{records / elapsed:,.0f}/s", refresh=False)

    return update, bar.close


def _build(args: argparse.Namespace, settings: Settings) -> int:
    out: Path | None = args.out or settings.directory_path
    if out is None:
        return _error("no index path: give --out or set CLAIMS_DIRECTORY_PATH")
    if not args.file.is_file():
        return _error(f"{args.file}: no such file")
    release, release_date = release_of(args.file, args.release, args.release_date)
    counter = [0]
    skipped: list[NppesFormatError] = []

    def on_error(exc: NppesFormatError) -> None:
        skipped.append(exc)
        echo(f"warning: {args.file}: {exc} (skipped)", file=sys.stderr)

    update, close = _progress(args.file, counter, "directory build")
    started = time.monotonic()
    try:
        records = read_nppes(
            open_text(str(args.file), counter), max_errors=args.max_errors, on_error=on_error
        )
        summary = build_index(
            records,
            out,
            release=release,
            release_date=release_date,
            source=args.file.name,
            on_progress=update,
            skipped=len(skipped),
        )
    except NppesFormatError as exc:
        return _error(f"{args.file}: {exc}")
    except DirectoryIndexError as exc:
        return _error(f"{args.file}: {exc}")
    finally:
        close()
    elapsed = time.monotonic() - started
    if args.verify:
        try:
            Directory.open(out, verify=True).close()
        except DirectoryIndexError as exc:
            return _error(str(exc))
    echo(
        f"built {summary.path}: release {summary.release}, {summary.rows:,} NPIs, {summary.codes} taxonomy "
        f"codes, {summary.size_bytes / 1e6:,.1f} MB, {elapsed:,.1f} s "
        f"({summary.rows / max(elapsed, 1e-9):,.0f} rows/s), {summary.skipped} rows skipped"
    )
    return 0


def _directory(path: Path, stack: ExitStack, scratch: Path) -> Directory:
    """Open ``path`` as an index, building a scratch one first when it is an NPPES CSV."""
    with path.open("rb") as handle:
        is_index = handle.read(len(MAGIC)) == MAGIC
    if not is_index:
        release, release_date = release_of(path, None, None)
        target = scratch / f"{path.name}.idx"
        build_index(
            read_nppes(open_text(str(path), [0])),
            target,
            release=release,
            release_date=release_date,
            source=path.name,
        )
        path = target
    return stack.enter_context(Directory.open(path))


def _publish(args: argparse.Namespace, settings: Settings) -> int:
    from worker.directory.updates import diff, ensure_topic, entry_of, publish  # noqa: PLC0415 - Kafka

    topic: str | None = args.topic or settings.directory_updates_topic
    if not topic:
        return _error("no updates topic: give --topic or set CLAIMS_DIRECTORY_UPDATES_TOPIC")
    for path in (args.file, args.since):
        if path is not None and not path.is_file():
            return _error(f"{path}: no such file")
    settings.require_bootstrap()
    release, release_date = release_of(args.file, args.release, args.release_date)
    try:
        with ExitStack() as stack:
            scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="directory-")))
            entries: Iterator[tuple[int, Entry]]
            if args.since is not None:
                new = _directory(args.file, stack, scratch)
                old = _directory(args.since, stack, scratch)
                entries = diff(old, new)
            else:
                with args.file.open("rb") as handle:
                    is_index = handle.read(len(MAGIC)) == MAGIC
                if is_index:
                    entries = stack.enter_context(Directory.open(args.file)).entries()
                else:
                    records = read_nppes(open_text(str(args.file), [0]))
                    entries = ((record.npi, entry_of(record)) for record in records)
            created = ensure_topic(settings, topic, args.partitions, args.replication_factor)
            sent = publish(settings, topic, entries, release=release, release_date=release_date)
    except NppesFormatError as exc:
        return _error(f"{exc}")
    except DirectoryIndexError as exc:
        return _error(str(exc))
    what = "the diff" if args.since is not None else "every NPI"
    echo(
        f"published {sent:,} records ({what}, release {release}) to {topic}{' (created)' if created else ''}"
    )
    return 0


def _show(args: argparse.Namespace, settings: Settings) -> int:
    path: Path | None = args.index or settings.directory_path
    if path is None:
        return _error("no index: give --index or set CLAIMS_DIRECTORY_PATH")
    when = args.date or datetime.now(UTC).date()
    try:
        with Directory.open(path) as directory:
            for npi in args.npis:
                facts = directory.facts(npi, when)
                echo(
                    json.dumps(
                        {
                            "npi": facts.npi,
                            "status": facts.status.value,
                            "taxonomies": list(facts.taxonomies),
                            "primary_taxonomy": facts.primary_taxonomy,
                            "directory_version": facts.directory_version,
                            "date_of_service": when.isoformat(),
                        }
                    )
                )
    except DirectoryIndexError as exc:
        return _error(str(exc))
    return 0


def _info(args: argparse.Namespace, settings: Settings) -> int:
    path: Path | None = args.index or settings.directory_path
    if path is None:
        return _error("no index: give INDEX or set CLAIMS_DIRECTORY_PATH")
    try:
        with Directory.open(path, verify=args.verify) as directory:
            header = dict(directory.header)
    except DirectoryIndexError as exc:
        return _error(str(exc))
    header["codes"] = len(header["codes"])
    header["size_bytes"] = path.stat().st_size
    echo(json.dumps(header, indent=2))
    return 0
