"""Garbage in, typed reason out: any bytes, truncations, wrong tags, broken balances and huge lines end in a parse or
a typed problem (the quarantine reason), never an exception. Property-based, bounded in examples and time."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge_pipelines.statements.checks import check_integrity
from bridge_pipelines.statements.importing import parse_statement_file
from bridge_pipelines.statements.model import ParsedStatementFile

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples" / "mt940"
GOOD = b"""{1:F01EXAMPLEXXXX0000000000}{2:I940EXAMPLEXXXXN}{4:
:20:STMT-1
:25:1000001234
:28C:1/1
:60F:C261201USD1000,00
:61:2612011201D100,00NTRFG000000000000001//B1
:86:/EREF/G000000000000001
:61:2612011201RD100,00NMSCG000000000000001//B2
:86:/EREF/G000000000000001/RTRN/AC04 ACCOUNT_CLOSED
:62F:C261201USD1000,00
-}
"""
TAGS = [b":20:", b":25:", b":28C:", b":60F:", b":60M:", b":61:", b":86:", b":62F:", b":62M:", b":64:", b":65:",
        b":99:", b"{4:", b"-}", b"\r\n", b"@@", b"\x01", b"\x03"]
FAST = settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow])


def assert_typed(parsed: ParsedStatementFile) -> None:
    assert isinstance(parsed, ParsedStatementFile)
    problems = list(parsed.problems) + check_integrity(parsed)
    for problem in problems:
        assert problem.code and problem.code.upper() == problem.code and problem.message
    if not problems:
        assert parsed.pages, "a clean parse has at least one statement"


@FAST
@given(st.binary(max_size=4096))
def test_random_bytes_never_crash(data: bytes) -> None:
    assert_typed(parse_statement_file(data))


@FAST
@given(st.integers(min_value=0, max_value=len(GOOD)))
def test_every_truncation_is_a_parse_or_a_typed_problem(cut: int) -> None:
    assert_typed(parse_statement_file(GOOD[:cut]))


@FAST
@given(st.lists(st.tuples(st.integers(min_value=0, max_value=len(GOOD)), st.sampled_from(TAGS)), max_size=6))
def test_wrong_tags_inserted_anywhere(edits: list[tuple[int, bytes]]) -> None:
    data = GOOD
    for position, tag in sorted(edits, reverse=True):
        data = data[:position] + tag + data[position:]
    assert_typed(parse_statement_file(data))


@FAST
@given(st.decimals(min_value=-10**12, max_value=10**12, places=2, allow_nan=False, allow_infinity=False))
def test_broken_balances_are_reported(closing) -> None:
    mark = b"D" if closing < 0 else b"C"
    amount = f"{abs(closing):.2f}".replace(".", ",").encode()
    data = GOOD.replace(b":62F:C261201USD1000,00", b":62F:" + mark + b"261201USD" + amount)
    parsed = parse_statement_file(data)
    problems = list(parsed.problems) + check_integrity(parsed)
    if closing != 1000:
        assert any(p.code == "BALANCE_MISMATCH" for p in problems)
    else:
        assert not problems


def test_a_ten_megabyte_line() -> None:
    data = GOOD.replace(b":86:/EREF/G000000000000001\n", b":86:" + b"X" * 10_000_000 + b"\n", 1)
    assert_typed(parse_statement_file(data))
    assert_typed(parse_statement_file(b":61:" + b"9" * 10_000_000))


def test_every_sample_parses_to_a_typed_result() -> None:
    files = sorted(p for p in SAMPLES.glob("*") if p.name != "MANIFEST.tsv")
    assert len(files) >= 41
    for path in files:
        assert_typed(parse_statement_file(path.read_bytes()))
