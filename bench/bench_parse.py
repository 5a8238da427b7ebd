"""Benchmark: our MT940 parser against the mt-940 library on one synthetic file.

    python bench/bench_parse.py [--lines 1000000] [--pages 10] [--library-lines 20000] [--repeat 1] [--json]

Generates an MT940 file with N statement lines (:61: + :86:, a mix of credits, debits, RD/RC reversals, German
?-structured and slash-coded :86:, supplementary-details lines, multi-line :86:) over several pages whose balances
close, times `parse_mt940` on all of it and mt-940's `parse_statements(..., options=Options.all())` on the first
`--library-lines` lines (mt-940 builds Python objects per tag and is far slower), and prints statement lines per
second for both and the ratio. `--json` prints the figures as one JSON object.

The machine is shared: wall-clock figures move with the load; `--repeat` keeps the best run, and the CPU time of
our run (summed over Polars' threads) is printed too, as a load-independent figure.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bridge_pipelines.statements.mt940 import parse_mt940  # noqa: E402

_MARKS = ("C", "D", "C", "D", "C", "D", "RD", "RC")


@dataclass
class BenchResult:
    lines: int
    pages: int
    megabytes: float
    ours_seconds: float
    ours_cpu_seconds: float
    ours_lines_per_second: float
    ours_lines_per_cpu_second: float
    library_lines: int
    library_seconds: float | None
    library_lines_per_second: float | None
    ratio: float | None
    parsed_lines: int
    problems: int


def synthetic_mt940(lines: int, pages: int) -> bytes:
    """An MT940 file with `lines` entries spread over `pages` statements (multi-page :62M:/:60M: chain)."""
    per_page = max(1, -(-lines // pages))
    parts: list[str] = []
    balance_cents = 1_000_000_00
    day = date(2025, 1, 2)
    written = 0
    page = 0
    while written < lines:
        page += 1
        count = min(per_page, lines - written)
        last_page = written + count >= lines
        opening_tag = "60F" if page == 1 else "60M"
        closing_tag = "62F" if last_page else "62M"
        parts.append(f":20:BENCH{page:06d}\n:25:NL91ABNA0417164300\n:28C:00001/{page:05d}\n")
        parts.append(f":{opening_tag}:{_balance(balance_cents, day)}\n")
        for index in range(written, written + count):
            entry, signed_cents = _entry(index, day)
            parts.append(entry)
            balance_cents += signed_cents
        parts.append(f":{closing_tag}:{_balance(balance_cents, day)}\n-\n")
        written += count
        day += timedelta(days=1)
    return "".join(parts).replace("\n", "\r\n").encode("utf-8")


def _balance(cents: int, day: date) -> str:
    mark = "C" if cents >= 0 else "D"
    return f"{mark}{day:%y%m%d}EUR{_amount(abs(cents))}"


def _amount(cents: int) -> str:
    return f"{cents // 100},{cents % 100:02d}"


def _entry(index: int, day: date) -> tuple[str, int]:
    mark = _MARKS[index % len(_MARKS)]
    cents = 1 + (index * 7919) % 250_000
    signed = cents if mark in ("C", "RD") else -cents
    statement_line = f":61:{day:%y%m%d}{day:%m%d}{mark}{_amount(cents)}NTRF{index:016d}//B{index:014d}\n"
    kind = index % 4
    if kind == 0:
        information = f":86:/EREF/PAY-{index:010d}/REMI/Benefit payment {index}/NAME/Beneficiary {index % 977}\n"
    elif kind == 1:
        information = (
            f":86:166?00GUTSCHRIFT?109310?20EREF+PAY-{index:010d}?21SVWZ+Benefit payment\n"
            f"?22{index}?30NOLADE21XXX?31DE89370400440532013000?32Beneficiary {index % 977}\n"
        )
    elif kind == 2:
        statement_line += "/TRCD/00100/\n"
        information = f":86:/EREF/PAY-{index:010d}/RTRN/AC04 ACCOUNT_CLOSED\n"
    else:
        information = f":86:/PREF/BATCH-{index // 1000:06d}/NRTX/{1 + index % 500}\n"
    return statement_line + information, signed


def time_ours(data: bytes, repeat: int) -> tuple[float, float, int, int]:
    """Best wall-clock time of `repeat` runs, the CPU time of that run (all threads), lines and problems."""
    best = best_cpu = float("inf")
    parsed_lines = problems = 0
    for _ in range(repeat):
        gc.collect()
        start, start_cpu = time.perf_counter(), time.process_time()
        parsed = parse_mt940(data)
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
        if seconds < best:
            best, best_cpu = seconds, cpu_seconds
        parsed_lines, problems = parsed.lines.height, len(parsed.problems)
        del parsed
    return best, best_cpu, parsed_lines, problems


def time_library(data: bytes) -> float | None:
    try:
        import mt940
    except ImportError:
        return None
    logging.disable(logging.CRITICAL)
    warnings.simplefilter("ignore")
    gc.collect()
    start = time.perf_counter()
    statements = mt940.parse_statements(data.decode("utf-8"), options=mt940.Options.all())
    seconds = time.perf_counter() - start
    del statements
    return seconds


def run(lines: int, pages: int, library_lines: int, repeat: int) -> BenchResult:
    data = synthetic_mt940(lines, pages)
    ours_seconds, ours_cpu_seconds, parsed_lines, problems = time_ours(data, repeat)
    library_lines = min(library_lines, lines)
    library_seconds = time_library(synthetic_mt940(library_lines, 1)) if library_lines else None
    ours_rate = lines / ours_seconds
    library_rate = library_lines / library_seconds if library_seconds else None
    return BenchResult(
        lines=lines,
        pages=pages,
        megabytes=round(len(data) / 1e6, 1),
        ours_seconds=round(ours_seconds, 3),
        ours_cpu_seconds=round(ours_cpu_seconds, 3),
        ours_lines_per_second=round(ours_rate),
        ours_lines_per_cpu_second=round(lines / ours_cpu_seconds),
        library_lines=library_lines,
        library_seconds=round(library_seconds, 3) if library_seconds else None,
        library_lines_per_second=round(library_rate) if library_rate else None,
        ratio=round(ours_rate / library_rate, 1) if library_rate else None,
        parsed_lines=parsed_lines,
        problems=problems,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=1_000_000, help="statement lines (:61: + :86:) to generate")
    parser.add_argument("--pages", type=int, default=10, help="statement pages to spread them over")
    parser.add_argument("--library-lines", type=int, default=20_000, help="lines timed with mt-940 (0: skip)")
    parser.add_argument("--repeat", type=int, default=1, help="time our parser this many times, keep the best")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    result = run(args.lines, args.pages, args.library_lines, args.repeat)
    if args.json:
        print(json.dumps(asdict(result)))
    else:
        print(f"file: {result.lines:,} statement lines over {result.pages} pages, {result.megabytes} MB")
        print(f"ours:   {result.ours_seconds:.3f} s  {result.ours_lines_per_second:,} lines/s "
              f"({result.parsed_lines:,} lines parsed, {result.problems} problems; "
              f"CPU {result.ours_cpu_seconds:.3f} s on all threads: {result.ours_lines_per_cpu_second:,} lines/CPU-s)")
        if result.library_seconds:
            print(f"mt-940: {result.library_seconds:.3f} s for {result.library_lines:,} lines  "
                  f"{result.library_lines_per_second:,} lines/s")
            print(f"ratio:  {result.ratio}x")
    return 0 if result.parsed_lines == result.lines and result.problems == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
