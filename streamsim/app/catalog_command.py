"""``streamsim catalog FILE``: load a catalogue file (``item,category,available``) into Bigtable."""

from __future__ import annotations

import collections
import sys
import time
from pathlib import Path

from streamsim.runtime.cli import backend_error, command_name, os_error, settings_from_args

#: Rows per write: one MutateRows call to each of the two tables.
BATCH_ROWS = 1000


def register(subparsers, parent) -> None:
    catalog = subparsers.add_parser(
        "catalog", parents=[parent], help="load item categories and availability from a CSV file"
    )
    catalog.add_argument("file", help="CSV item,category,available (header optional; ';' works too; .gz read directly)")
    catalog.add_argument("--no-progress", action="store_true", help="no progress bar")
    catalog.set_defaults(run=run_catalog)


def run_catalog(args) -> int:
    from streamsim.runtime.bigtable import open_tables
    from streamsim.runtime.catalog import write_catalog
    from streamsim.sources.catalog import read_catalog
    from streamsim.sources.formats import FormatError

    what = command_name(args)
    started = time.monotonic()
    rows = read_catalog(args.file, int(time.time() * 1000))
    try:
        first = next(rows, None)
    except FormatError as exc:
        print(f"{what}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"{what}: {os_error(exc)}", file=sys.stderr)
        return 2
    settings = settings_from_args(args)
    problem = backend_error(settings)
    if problem:
        rows.close()
        print(f"{what}: {problem}", file=sys.stderr)
        return 1
    tables = open_tables(settings)
    bar = _progress_bar(args)
    written = 0
    #: item -> (category, available) as written (None: left as it is): the summary counts distinct items.
    final: dict[str, tuple[str, bool | None]] = {}
    rejected: collections.Counter[str] = collections.Counter()
    examples: dict[str, int] = {}
    pending: dict[str, object] = {}  # item -> update: a repeated item, the last line wins

    def flush() -> None:
        nonlocal written
        written += write_catalog(tables, pending.values())
        pending.clear()

    for row in rows if first is None else _with_first(first, rows):
        if row.update is None:
            rejected[row.reason] += 1
            examples.setdefault(row.reason, row.line_number)
        else:
            pending[row.update.item] = row.update
            final[row.update.item] = (row.update.category, row.update.available)
            if len(pending) >= BATCH_ROWS:
                flush()
        if bar is not None:
            bar.update(1)
    flush()
    if bar is not None:
        bar.close()
    seconds = time.monotonic() - started
    categories = len({category for category, _ in final.values()})
    hidden = sum(available is False for _, available in final.values())
    print(
        f"catalogue: {len(final)} items in {categories} categories ({hidden} hidden) written in {seconds:.1f}s "
        f"({written} rows); rejected {sum(rejected.values())}"
    )
    for reason, count in rejected.most_common():
        print(f"  {reason}: {count} (first at line {examples[reason]})")
    if not final and not rejected:
        print(f"  ({args.file} has a header and no data lines)")
    return 0


def _with_first(first, rows):
    yield first
    yield from rows


def _progress_bar(args):
    if args.no_progress or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(unit="row", desc=f"catalog {Path(args.file).name}", smoothing=0.1, file=sys.stderr, disable=None)
