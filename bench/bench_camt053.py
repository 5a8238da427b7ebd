"""Benchmark of the camt.053 parser: generate a large statement with the writer, time the parse.

    python bench/bench_camt053.py [--entries 200000] [--json] [--parser default|conforming]

Prints which path read the file (fast, or conforming with the reason the fast path declined), entries per second,
the CPU seconds of the parse (all threads) and the 1-minute load average just before it, file size, and memory:
RSS with the document loaded, peak RSS during the parse (Linux peak counter reset before parsing) and the size
Polars estimates for the resulting lines frame. "Memory flat in file size" means the peak minus the loaded
document minus the lines frame stays roughly constant when --entries grows. `--parser conforming` times the
ElementTree parser alone, for comparison on the same machine.

Two caveats for reading the figures. The dev machine has 2 cores and is shared (another engineer's benchmarks
ran throughout), so wall-clock figures swing with the load; CPU seconds per entry are the steadier measure.
And `estimated_size()` undercounts the lines frame about 1.9x (it leaves out the 16-byte views of the ten String
columns): with jemalloc's page decay switched off, the frame measurably takes ~52 MiB at 200k entries and ~260 MiB
at 1M, for both parsers.

Measured with parse_camt053 (fast path) and --parser conforming, on the 2-core dev machine [1-minute load]:

                          entries/s                       parse CPU s   peak RSS MiB (document loaded)
    200k  conforming      12,188 [~1]; 7,327-7,445 [3.2-3.6]   ~16-20       239-240 (147)
    200k  fast            82,568-88,699 [1.8-2.7]           2.2-3.5       270-291 (147)
                          55,749-79,521 [2.3-3.2]
    1M    conforming       8,811 [busy: other runs]         (113 s wall)  865 (533)
    1M    fast            85,061 [~1.8]; 63,655-65,330 [2.5-2.6]   14.8-15.5   903-912 (533)

The fast path's own working set stays flat: with jemalloc's decay off its peak is the document + the real lines
frame + ~75-85 MiB both at 200k (273 MiB) and at 1M (877 MiB); with the default decay the allocator keeps up to
~40 MiB more of freed pages around. Under heavy contention (load 3.6-4.1 on 2 cores) 200k runs gave 39,270-52,641/s.

Where the fast path's time goes (200k entries, 96 MiB; each step timed on its own, machine fairly quiet):
  pyexpat over every byte, no callbacks (own thread) ......... ~0.95 s
  entry skeletons: Polars replace_all(">[^<]+<", "><") ...... ~0.38 s
  blocks split on "<" ....................................... ~0.19 s
  slot gathers, cleaning, checks, lines ..................... ~0.35 s
  decode, split into blocks, scanner, header parser ......... ~0.3 s
pyexpat holds the GIL and Polars releases it, so the two overlap: ~1.7 s wall on an idle second core.
Tried and dropped: one regex with capture groups per shape (Polars extract_groups: ~0.8 s for the 200k where
split + gather take ~0.25 s); the window as one lazy query (no gain measured; the split stays an eager step);
validation inline instead of in a thread (no gain under load, ~25% slower wall time with a free core); windows of
1/2/8/16 MiB instead of 4 (8 MiB is ~8% faster, at twice the working memory).

What was measured before the fast path (20,000 writer entries of ~24 XML elements, 10 MB):
  expat alone, no callbacks ................................ ~0.1 s
  ElementTree building the whole tree (fromstring) ......... ~0.45 s   (the floor for any ElementTree parse)
  XMLPullParser start+end events, no work per entry ........ ~1.1 s
  lxml XMLPullParser, tag-filtered to Ntry (not a dependency) ~0.85 s
  pyexpat with C-level callbacks doing nothing ............. ~0.6 s
  Polars/Rust regex extraction of the same fields .......... ~1.4 s
So a conforming XML parse with one Python object per element cannot reach 50,000 entries/s on this machine; hence
the fast path: expat without callbacks for well-formedness, a byte scanner and Polars for the entries.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bridge_pipelines.statements.camt053 import parse_camt053, parse_camt053_conforming  # noqa: E402
from bridge_pipelines.statements.camt053_scan import fast_path_decline_reason  # noqa: E402
from bridge_pipelines.statements.camt053_writer import CamtBalance, CamtBatch, CamtEntry, iter_camt053  # noqa: E402

BOOKING_DATE = date(2025, 3, 31)


def synthetic_entries(count: int) -> Iterator[CamtEntry]:
    """A G2P-like mix: mostly single disbursements, some returns, reversals, batches and incoming credits."""
    for number in range(count):
        amount = Decimal(1000 + number % 90_000) / 100
        kind = number % 20
        common = {
            "amount": amount,
            "booking_date": BOOKING_DATE,
            "value_date": BOOKING_DATE - timedelta(days=number % 3),
            "account_servicer_reference": f"BNK{number:012d}",
        }
        if kind == 0:
            yield CamtEntry(credit_debit="CRDT", return_reason="AC04", end_to_end_id=f"G2P-{number:010d}", **common)
        elif kind == 1:
            yield CamtEntry(credit_debit="CRDT", reversal=True, end_to_end_id=f"G2P-{number:010d}", **common)
        elif kind == 2:
            yield CamtEntry(credit_debit="DBIT", batch=CamtBatch(f"PMTINF-{number:08d}", 25), **common)
        elif kind == 3:
            yield CamtEntry(credit_debit="CRDT", remittance_information="Budget funding tranche", **common)
        else:
            yield CamtEntry(
                credit_debit="DBIT",
                end_to_end_id=f"G2P-{number:010d}",
                remittance_information=f"Cash transfer programme beneficiary {number}",
                **common,
            )


def closing_for(opening: Decimal, count: int) -> Decimal:
    signed = {"C": 1, "RD": 1, "D": -1, "RC": -1}
    total = opening
    for entry in synthetic_entries(count):
        mark = ("RD" if entry.reversal else "C") if entry.credit_debit == "CRDT" else ("RC" if entry.reversal else "D")
        total += signed[mark] * entry.amount
    return total


def write_sample(path: Path, count: int) -> None:
    opening = Decimal("50000000.00")
    chunks = iter_camt053(
        account="NL91ABNA0417164300",
        currency="EUR",
        statement_id="BENCH-0001",
        electronic_sequence_number=1,
        opening_balance=CamtBalance(opening, BOOKING_DATE - timedelta(days=1)),
        closing_balance=CamtBalance(closing_for(opening, count), BOOKING_DATE),
        entries=synthetic_entries(count),
        created_at=datetime(2025, 3, 31, 23, 0, tzinfo=UTC),
    )
    with path.open("wb") as handle:
        for chunk in chunks:
            handle.write(chunk)


def rss_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: resets VmHWM to the current RSS
        return True
    except OSError:
        return False


def main() -> None:
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument("--entries", type=int, default=200_000)
    arguments.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    arguments.add_argument(
        "--parser",
        choices=("default", "conforming"),
        default="default",
        help="default: parse_camt053 (fast path, conforming parser when it declines); conforming: the ElementTree "
        "parser alone, for comparison",
    )
    options = arguments.parse_args()

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "bench.camt053.xml"
        started = time.perf_counter()
        write_sample(path, options.entries)
        write_seconds = time.perf_counter() - started
        data = path.read_bytes()

    rss_loaded = rss_kib("VmRSS")
    peak_resettable = reset_peak_rss()
    load_before = os.getloadavg()[0]
    started, started_cpu = time.perf_counter(), time.process_time()
    parsed = (parse_camt053 if options.parser == "default" else parse_camt053_conforming)(data)
    parse_seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - started_cpu
    peak = rss_kib("VmHWM") if peak_resettable else None
    if peak is None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux; includes generation
    decline = fast_path_decline_reason(data) if options.parser == "default" else "not tried (--parser conforming)"

    if parsed.problems or parsed.lines.height != options.entries:
        raise SystemExit(f"unexpected parse result: {parsed.problems[:3]}, {parsed.lines.height} lines")
    page = parsed.pages[0]
    balance_closes = page.opening_balance.signed + parsed.lines["signed_amount"].sum() == page.closing_balance.signed

    result = {
        "entries": options.entries,
        "path": "fast" if decline is None else f"conforming ({decline})",
        "file_mib": round(len(data) / 2**20, 1),
        "write_seconds": round(write_seconds, 2),
        "parse_seconds": round(parse_seconds, 3),
        "entries_per_second": round(options.entries / parse_seconds),
        "mib_per_second": round(len(data) / 2**20 / parse_seconds, 1),
        "parse_cpu_seconds": round(cpu_seconds, 3),  # all threads of the process (pyexpat thread, Polars pool)
        "load_average_1m": round(load_before, 2),  # the machine is shared: read the wall-clock figures with it
        "rss_with_document_mib": round(rss_loaded / 1024, 1) if rss_loaded else None,
        "peak_rss_during_parse_mib": round(peak / 1024, 1),
        "peak_is_parse_only": peak_resettable,
        "lines_frame_mib": round(parsed.lines.estimated_size() / 2**20, 1),
        "balance_closes": bool(balance_closes),
    }
    if options.json:
        print(json.dumps(result))
    else:
        width = max(map(len, result))
        for key, value in result.items():
            print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
