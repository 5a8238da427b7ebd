"""SWIFT MT940 → the shared statement model. Pure: bytes in, `ParsedStatementFile` out; never raises.

How it reads a file, without a Python object per entry (1,000,000 statement lines are 140 MB):
1. bytes, once: control bytes (SOH, ETX, Ctrl-Z...) → LF; encoding: UTF-8, else cp1252, else latin-1 (transcoded
   to UTF-8); CR dropped; FinTS "@@" → LF; SWIFT envelope blocks {1:}{2:}{3:}{4: and {5:} removed, "-}" → "-";
   every LF before a colon → 0x1E;
2. Polars' CSV reader with 0x1E as record end cuts that into one row per tag field, in native code. A record that
   does not start with a known tag (":KO:NR:...", ": ?70", ":12:11") is a continuation line of the field before:
   banks wrap :86: text anywhere, colons included. A "-" line ends a message;
3. Polars expressions assign fields to pages and pair each :61: with its :86:, then read every :61: with one
   regex (`str.extract_groups`) and the :86: references with a few gated string operations;
4. headers and balances (a handful per page) are read in plain Python.

Page boundaries: a :20:, the first tag after a "-" separator, or a second opening balance in the same page (files
that lost their headers: each :60a: still opens a statement). Entry information is every :86: that follows a :61:
before any other tag; any other :86: (before the first :61:, or after :62a:/:64:/:65:) is statement-level.

Reading decisions that are not in the SWIFT standard but in real files (see the samples' manifest):
- :61: mark R?[CD], case-insensitive ("d" in ABN AMRO examples); funds code = one letter after the mark ("CR", "DD",
  "RCR"); amount with comma or point, no decimals or no separator at all ("500"); optional space before the type
  code; no type code when the text after the amount is "NONREF" (Penta "D20,00NONREF"); type "S   " (Sberbank)
  kept as "S"; an entry-date slot of four spaces (Citi) means no entry date.
- Customer reference: up to "//". When it is longer than 16 characters and whitespace sits at the 16-character
  boundary, the SWIFT 16x reference is the first 16 characters and the rest (Rabobank legacy: counterparty name)
  goes to the supplementary details. A longer reference without such a break (ASN: an IBAN) is kept whole.
- Value date YYMMDD: 00-69 → 20xx, 70-99 → 19xx. Entry date MMDD takes the value date's year, minus one when it
  lies more than six months after the value date's month (value 0102, entry 1231), plus one when more than six
  months before it.
- A balance without currency (":62M:C020315105000,00") takes the page's currency.
- An invalid date (Feb 30) keeps the entry (its amount still counts) with a null date and a PARSE_ERROR; a :61:
  that cannot be read at all, or whose amount cannot be read, is dropped with a PARSE_ERROR, so the integrity check
  also reports LINE_COUNT_MISMATCH against the raw :61: count. A statement without :20:, :25: or :28C: and an
  unreadable or repeated header or balance are PARSE_ERRORs too; non-SWIFT :NS: fields are skipped.
- :86: → information: continuation lines joined with "\n", consecutive :86: tags joined with "\n", trailing blanks
  and blank lines dropped. Extracted from it: end_to_end_reference (/EREF/ or EREF+, "NOTPROVIDED"/"NONREF" → null;
  German ?20-?29/?60-?63 subfields are joined first, so EREF+ split over subfields is whole), return_reason (/RTRN/
  value, RTRN+, else a German booking text (?00) with STORNO/RETOURE/RUECK..., else such a word in the text, e.g.
  Dutch "Terugboeking"), batch_reference (/PREF/), batch_count (/NRTX/, German "Anzahl Posten").
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation

import polars as pl

from bridge_pipelines.statements.model import (
    AMOUNT_DTYPE,
    CREDIT_MARKS,
    LINE_SCHEMA,
    Balance,
    ParsedStatementFile,
    Problem,
    StatementPage,
    empty_lines,
)

FORMAT = "MT940"
PARSE_ERROR = "PARSE_ERROR"
NO_STATEMENT = "NO_STATEMENT"

# Tags that mean something to us, and tags we recognise only so that their text is not taken for a continuation
# of the field before (non-SWIFT :NS:, Rabobank's ":940:" pseudo header, MT942 fields).
_STATEMENT_TAGS = r"20|21|25|28C?|60[FM]?|61|62[FM]?|64|65[A-Z]?|86"
_IGNORED_TAGS = ("NS", "940", "13", "13D", "34F", "90C", "90D")
_TAG_AT_START = "^:(?:" + _STATEMENT_TAGS + "|" + "|".join(_IGNORED_TAGS) + "):"
# A "-" line ends a message (after the envelope "-}" became "-"); what follows it up to the next tag is not ours.
_SEPARATOR_LINE_TO_END = r"\n-[ \t]*(?:\n[\s\S]*)?$"
_FIELD_START_CHAR = "\x1e"  # ASCII record separator: a control byte, so never left in the prepared data
_FIELD_START = b"\x1e:"
_NO_SEPARATOR = "\x1f"  # ASCII unit separator, likewise never in the data

_CONTROL_BYTES_TO_LF = bytes(
    10 if byte < 32 and byte not in (9, 10, 13) or byte == 127 else byte for byte in range(256)
)
# Envelope blocks {1:..}{2:..}{3:{108:..}} (block 2 sometimes left unclosed before {3:), the {4: opener, the
# {5:{MAC:..}{CHK:..}} trailer, and the "-}" message end.
_HEADER_BLOCK = re.compile(rb"\{[1-3]:(?:[^{}\n]|\{[^{}\n]*\})*\}?")
_TRAILER_BLOCK = re.compile(rb"\{5:(?:[^{}\n]|\{[^{}\n]*\})*\}?")
_TEXT_BLOCK_OPEN = b"{4:"
_MESSAGE_END = re.compile(rb"(?m)^-\}")
_SNIFF_LENGTH = 65536
# Lazy plans run on the streaming engine: it spreads the row-wise string work over all cores.
_POLARS_ENGINE = "streaming"

# The fixed-format head of a :61: first line; what follows it is "customer reference[//bank reference]". Written
# without a trailing "(.*)" group, without alternatives for the type code, and with [0-9] rather than \d: Polars'
# regex engine captures such a pattern several times faster.
_STATEMENT_LINE_HEAD = (
    r"^(?P<value_date>[0-9]{6})(?P<entry_date>[0-9]{4}| {4})?(?P<mark>[Rr]?[CDcd])(?P<funds_code>[A-Z])?"
    r"(?P<amount>[0-9]+(?:[,.][0-9]*)?)(?P<space> ?)(?P<type>[NFS][A-Za-z0-9 ]{3})?"
)
_HEAD_GROUPS = ("value_date", "entry_date", "mark", "funds_code", "amount", "space", "type")
_BALANCE = re.compile(r"^([CDcd])([0-9]{6})([A-Z]{3})?([0-9]+(?:[,.][0-9]*)?)$")
_SWIFT_REFERENCE_LENGTH = 16
_SEPA_REFERENCE_LENGTH = 35  # EndToEndId and the other SEPA references are at most 35 characters
_PLACEHOLDER_REFERENCES = ("NOTPROVIDED", "NONREF")

# Structured :86: content. Slash codes (/EREF/x/RTRN/y) run until the next /CODE/ or the end; German ?-subfields
# carry the purpose in ?20-?29 and ?60-?63, where SEPA keywords (EREF+, KREF+, SVWZ+...) run until the next one.
_NEXT_SLASH_CODE = r"/[A-Z]{2,4}/"
_GERMAN_STRUCTURED = r"^[0-9]{3}\?[0-9]{2}"
_PURPOSE_SUBFIELD = r"\?(?:2[0-9]|6[0-3])[^?]*"  # the purpose, continued over ?20-?29 and ?60-?63
_NEXT_KEYWORD = r"[A-Z]{4}[+:]"  # "KREF+", "SVWZ+"; also "MTLG:", "IBAN:" in free text
_REVERSAL_WORDS = (
    r"(?i)(STORNO|RETOURE|TERUGBOEKING|R(?:UE|Ü)CKBUCHUNG|R(?:UE|Ü)CKLASTSCHRIFT|R(?:UE|Ü)CK(?:UE|Ü)BERWEISUNG)"
)


@dataclass
class _Fields:
    """The text split into tag fields, with each field's page; entries and their :86: already paired."""

    entries: pl.DataFrame  # page, entry_sequence, statement_line, information (one row per :61:)
    others: pl.DataFrame  # page, tag, content, entries_before (headers, balances, statement-level :86:)
    page_count: int


def parse_mt940(data: bytes) -> ParsedStatementFile:
    """Read an MT940 file. Never raises: whatever goes wrong becomes a `Problem`."""
    try:
        return _parse(data)
    except Exception as error:  # noqa: BLE001 - the contract is "never raise on any input"
        return ParsedStatementFile(
            format=FORMAT,
            pages=[],
            lines=empty_lines(),
            problems=[Problem(PARSE_ERROR, f"the file could not be read: {type(error).__name__}: {error}")],
        )


def count_raw_entries(data: bytes) -> list[int]:
    """The number of :61: tags at line starts in each statement page of the raw file (what a complete parse must
    yield per page; `parse_mt940` stores it as `StatementPage.raw_entry_count`)."""
    prepared, _ = prepare(data)
    fields = _split_fields(prepared)
    counts = _raw_entry_counts(fields.entries)
    return [counts.get(page, 0) for page in range(fields.page_count)]


def prepare(data: bytes) -> tuple[bytes, str]:
    """The file as UTF-8 bytes ready for the field split, and the encoding it was read with (UTF-8, else cp1252,
    else latin-1).

    In the result, lines end with LF; control bytes (SOH, ETX, Ctrl-Z...) and FinTS "@@" are line breaks; SWIFT
    envelope blocks are gone and each "-}" is a "-" separator line; and every line break before a colon is a record
    separator byte (0x1E), so that Polars' CSV reader cuts the file into one row per tag field.
    """
    data = bytes(data).translate(_CONTROL_BYTES_TO_LF)  # these bytes never occur inside a UTF-8 sequence
    data = data.removeprefix(b"\xef\xbb\xbf")
    encoding = _detect_encoding(data)
    if encoding != "utf-8":
        data = data.decode(encoding).encode("utf-8")
    if b"\r" in data:
        # CRLF (or a stray CR before LF): drop every CR; a file with CR line ends only gets LF instead.
        data = data.replace(b"\r", b"") if b"\n" in data else data.replace(b"\r", b"\n")
    if b"@@" in data[:_SNIFF_LENGTH]:  # a FinTS dump separates every line with "@@", from the first one on
        data = data.replace(b"@@", b"\n")
    if b"{" in data:
        data = _TRAILER_BLOCK.sub(b"\n", data)
        data = _HEADER_BLOCK.sub(b"\n", data).replace(_TEXT_BLOCK_OPEN, b"\n")
        data = _MESSAGE_END.sub(b"-", data)
    return data.replace(b"\n:", _FIELD_START), encoding


def _detect_encoding(data: bytes) -> str:
    if data.isascii():  # the SWIFT character set: most files, and a much faster test than decoding
        return "utf-8"
    for encoding in ("utf-8", "cp1252"):
        try:
            data.decode(encoding)
        except UnicodeDecodeError:
            continue
        return encoding
    return "latin-1"


def _parse(data: bytes) -> ParsedStatementFile:
    prepared, encoding = prepare(data)
    fields = _split_fields(prepared)
    problems: list[Problem] = []
    pages = _build_pages(fields, problems)
    if not pages:
        problems.append(Problem(NO_STATEMENT, "no MT940 statement found (no :20:, :25:, :60a:, :61: or :62a: tag)"))
        return ParsedStatementFile(FORMAT, [], empty_lines(), problems, encoding)
    raw_counts = _raw_entry_counts(fields.entries)
    for index, page in enumerate(pages):
        page.raw_entry_count = raw_counts.get(index, 0)
    lines = _build_lines(fields.entries, [page.currency for page in pages], problems)
    problems.sort(key=lambda problem: (problem.page if problem.page is not None else -1, problem.entry_sequence or 0))
    return ParsedStatementFile(FORMAT, pages, lines, problems, encoding)


# --- fields, pages, entries -------------------------------------------------------------------------------------


def _split_fields(prepared: bytes) -> _Fields:
    fields = _read_fields(prepared)
    tag = pl.col("tag")
    is_statement_tag = tag.is_not_null() & ~tag.is_in(_IGNORED_TAGS)
    fields = (
        fields.with_columns(
            is_statement_tag=is_statement_tag,
            # Has a "-" separator come since the previous statement tag (or is this the first one)?
            after_separator=pl.when(pl.col("ends_message")).then(True).when(is_statement_tag).then(False)
            .forward_fill().shift(1).fill_null(True),
        )
        .with_columns(
            starts_page=pl.col("is_statement_tag") & ((tag == "20") | pl.col("after_separator")),
            is_opening=tag.str.starts_with("60").fill_null(False),
        )
        .with_columns(_count_since_start("is_opening", "starts_page").alias("openings_in_page"))
        .with_columns(starts_page=pl.col("starts_page") | (pl.col("is_opening") & (pl.col("openings_in_page") > 1)))
        .with_columns(
            page=pl.col("starts_page").cast(pl.Int32).cum_sum() - 1,  # -1: ignored tags before the first page
            is_entry=(tag == "61").fill_null(False),
            # Is the last statement tag before this one, other than :86:, within its page, a :61:?
            follows_entry=pl.when(tag == "86")
            .then(pl.when(pl.col("starts_page")).then(False))
            .when(pl.col("is_statement_tag"))
            .then(tag == "61")
            .forward_fill(),
        )
        .with_columns(
            is_entry_information=((tag == "86") & pl.col("follows_entry")).fill_null(False),
            entries_before=_count_since_start("is_entry", "starts_page").cast(pl.Int32),
        )
    )
    page_count = int(fields["page"].max()) + 1 if fields["page"].max() is not None else 0
    others = fields.filter(
        pl.col("is_statement_tag") & ~pl.col("is_entry") & ~pl.col("is_entry_information")
    ).select("page", "tag", "content", "entries_before")
    return _Fields(entries=_entries_with_information(fields), others=others, page_count=page_count)


def _read_fields(prepared: bytes) -> pl.DataFrame:
    """One row per tag field: tag (without colons), content, and whether a "-" separator line ends it.

    Polars' CSV reader, told that 0x1E ends a record and that no separator or quote exists, cuts the prepared file
    into fields in parallel native code. A record that does not start with a known tag is the preamble (the first
    one) or a continuation line that starts with a colon (":KO:NR:..."), which goes back into the field before it.
    """
    records = pl.read_csv(
        prepared, has_header=False, separator=_NO_SEPARATOR, quote_char=None, eol_char=_FIELD_START_CHAR,
        schema={"record": pl.String()}, raise_if_empty=False,
    ).filter(pl.col("record").is_not_null())
    records = records.with_columns(tag_with_colons=pl.col("record").str.extract(_TAG_AT_START, 0))
    records = records.select(
        tag=pl.col("tag_with_colons").str.strip_chars(":"),
        content=pl.col("record").str.slice(pl.col("tag_with_colons").str.len_chars().fill_null(0)),
    )
    return _cut_at_separators(_rejoin_continuations(records))


def _cut_at_separators(fields: pl.DataFrame) -> pl.DataFrame:
    """Cut each field at a "-" separator line (the rest, up to the next tag, is not ours) and flag that field."""
    content = fields["content"]
    candidates = fields.select(pl.arg_where(pl.col("content").str.contains("\n-", literal=True))).to_series()
    ends_message = pl.repeat(False, fields.height, dtype=pl.Boolean(), eager=True).alias("ends_message")
    if candidates.len():
        written = content.gather(candidates)
        cut = written.str.replace(_SEPARATOR_LINE_TO_END, "")
        content = content.scatter(candidates, cut)
        ends_message = ends_message.scatter(candidates, cut.str.len_bytes() < written.str.len_bytes())
    return fields.with_columns(content, ends_message)


def _rejoin_continuations(records: pl.DataFrame) -> pl.DataFrame:
    """Put records without a tag back into the field before them; drop the preamble before the first tag."""
    has_tag = pl.col("tag").is_not_null()
    records = records.with_columns(field=has_tag.cum_sum()).filter(pl.col("field") > 0)
    if records.select(has_tag.all()).item():
        return records.drop("field")
    continued = records.filter(pl.col("field").is_in(records.filter(~has_tag)["field"].implode()))
    rejoined = continued.group_by("field", maintain_order=True).agg(
        pl.col("tag").first(), pl.col("content").str.join("\n")  # a continuation's content is its whole line
    )
    return (
        records.filter(has_tag)
        .join(rejoined, on="field", how="left", suffix="_rejoined", maintain_order="left")
        .select("tag", pl.coalesce("content_rejoined", "content").alias("content"))
    )


def _count_since_start(flag: str, starts: str) -> pl.Expr:
    """How many rows with `flag` there are from the last row with `starts` up to this row (a cumulative count that
    restarts on every `starts` row, without a window over groups)."""
    count = pl.col(flag).cast(pl.Int64)
    running = count.cum_sum()
    base = pl.when(pl.col(starts)).then(running - count).forward_fill()
    return running - base


def _entries_with_information(fields: pl.DataFrame) -> pl.DataFrame:
    """One row per :61: with its :86: text. The :86: fields of an entry follow it directly; several consecutive
    :86: tags (Rabobank legacy) are joined with a line break."""
    entry_fields = fields.filter(pl.col("is_entry") | pl.col("is_entry_information")).select(
        "page", "entries_before", "is_entry", "content"
    )
    several = (~pl.col("is_entry") & ~pl.col("is_entry").shift(1, fill_value=True)).any()
    if entry_fields.select(several).item():
        entries = (
            entry_fields.with_columns(entry_key=pl.col("is_entry").cum_sum(), text=_clean_text("content"))
            .group_by("entry_key", maintain_order=True)
            .agg(
                pl.col("page").first(),
                pl.col("entries_before").first(),
                pl.col("content").first().alias("statement_line"),
                pl.col("text").slice(1).str.join("\n").alias("information"),
            )
        )
    else:
        information_follows = ~pl.col("is_entry").shift(-1, fill_value=True)
        entries = (
            entry_fields.with_columns(
                statement_line="content", information=pl.when(information_follows).then(pl.col("content").shift(-1))
            )
            .filter(pl.col("is_entry"))
            .with_columns(information=_clean_text("information"))
        )
    return entries.select(
        "page",
        pl.col("entries_before").alias("entry_sequence"),
        "statement_line",
        information=pl.when(pl.col("information") != "").then(pl.col("information")),
    )


def _clean_text(column: str) -> pl.Expr:
    """A field's text without the trailing blanks/blank lines and leading blank lines banks pad it with."""
    return pl.col(column).str.strip_chars_end().str.strip_chars_start("\n")


def _raw_entry_counts(entries: pl.DataFrame) -> dict[int, int]:
    counts = entries.group_by("page").len()
    return dict(zip(counts["page"].to_list(), counts["len"].to_list(), strict=True))


# --- headers and balances ---------------------------------------------------------------------------------------


def _build_pages(fields: _Fields, problems: list[Problem]) -> list[StatementPage]:
    tags_by_page: list[list[tuple[str, str, int]]] = [[] for _ in range(fields.page_count)]
    for page, tag, content, entries_before in fields.others.iter_rows():
        tags_by_page[page].append((tag, content, entries_before))
    return [_build_page(index, tags, problems) for index, tags in enumerate(tags_by_page)]


def _build_page(index: int, tags: list[tuple[str, str, int]], problems: list[Problem]) -> StatementPage:
    page = StatementPage(transaction_reference=None, account=None)
    currency = _page_currency(tags)
    statement_information: list[str] = []
    seen: set[str] = set()
    for tag, content, entries_before in tags:
        first_line = content.split("\n", 1)[0].strip()
        kind = _tag_kind(tag)
        if kind == "information":
            text = content.rstrip().lstrip("\n")
            if text:
                statement_information.append(text)
            continue
        if kind in seen and kind != "forward":
            after = f" after statement line {entries_before}" if entries_before else ""
            problems.append(
                Problem(PARSE_ERROR, f"repeated :{tag}: in one statement{after}: {first_line[:60]!r} ignored",
                        index, entries_before or None)
            )
            continue
        seen.add(kind)
        if kind in ("opening", "closing", "available", "forward"):
            balance = _parse_balance(first_line, currency, tag, index, problems)
            if balance is not None:
                _set_balance(page, kind, tag, balance)
        else:
            _set_header(page, kind, first_line)
    page.information = "\n".join(statement_information) or None
    missing = [name for name, value in ((":20:", page.transaction_reference), (":25:", page.account),
                                        (":28C:", page.statement_number)) if not value]
    if missing:
        problems.append(Problem(PARSE_ERROR, f"statement without mandatory {', '.join(missing)}", index))
    return page


def _tag_kind(tag: str) -> str:
    if tag.startswith("60"):
        return "opening"
    if tag.startswith("62"):
        return "closing"
    if tag.startswith("65"):
        return "forward"
    return {"20": "reference", "21": "related", "25": "account", "28": "number", "28C": "number",
            "64": "available", "86": "information"}[tag]


def _set_header(page: StatementPage, kind: str, value: str) -> None:
    value_or_none = value or None
    if kind == "reference":
        page.transaction_reference = value_or_none
    elif kind == "related":
        page.related_reference = value_or_none
    elif kind == "account":
        page.account = value_or_none
    elif kind == "number":
        number, _, sequence = value.partition("/")
        page.statement_number = number.strip() or None
        page.sequence_number = sequence.strip() or None


def _set_balance(page: StatementPage, kind: str, tag: str, balance: Balance) -> None:
    if kind == "opening":
        page.opening_balance = balance
        page.opening_is_intermediate = tag.endswith("M")
    elif kind == "closing":
        page.closing_balance = balance
        page.closing_is_intermediate = tag.endswith("M")
    elif kind == "available":
        page.closing_available_balance = balance
    else:
        page.forward_available_balances.append(balance)


def _page_currency(tags: Iterable[tuple[str, str, int]]) -> str | None:
    for tag, content, _ in tags:
        if tag[:2] in ("60", "62", "64", "65"):
            match = _BALANCE.match(content.split("\n", 1)[0].strip())
            if match and match.group(3):
                return match.group(3)
    return None


def _parse_balance(text: str, currency: str | None, tag: str, page: int, problems: list[Problem]) -> Balance | None:
    match = _BALANCE.match(text)
    if not match:
        problems.append(Problem(PARSE_ERROR, f"unreadable balance :{tag}:{text}", page))
        return None
    mark, digits, written_currency, written_amount = match.groups()
    balance_date = _swift_date(digits)
    amount = _decimal(written_amount)
    if balance_date is None or amount is None:
        problems.append(Problem(PARSE_ERROR, f"invalid date or amount in balance :{tag}:{text}", page))
        return None
    return Balance(mark=mark.upper(), date=balance_date, currency=written_currency or currency or "", amount=amount)


def _swift_date(digits: str) -> date | None:
    """YYMMDD; years 70-99 are 19xx, 00-69 are 20xx (as Polars reads %y for the statement lines)."""
    year = int(digits[:2])
    try:
        return date(year + (1900 if year >= 70 else 2000), int(digits[2:4]), int(digits[4:6]))
    except ValueError:
        return None


def _decimal(written: str) -> Decimal | None:
    try:
        return Decimal(written.replace(",", "."))
    except InvalidOperation:
        return None


# --- entry lines ------------------------------------------------------------------------------------------------


def _build_lines(entries: pl.DataFrame, page_currencies: list[str | None], problems: list[Problem]) -> pl.DataFrame:
    if entries.height == 0:
        return empty_lines()
    parsed = (
        entries.lazy()
        .with_columns(
            pl.col("statement_line").str.splitn("\n", 2).struct.rename_fields(["first_line", "details"]).alias("split")
        )
        .unnest("split")
        .with_columns(pl.col("first_line").str.extract_groups(_STATEMENT_LINE_HEAD).alias("head"))
        .unnest("head")
        .with_columns(_read_amount(), *_read_dates(), _references_after_head())
        .with_columns(_without_nonref_type())
        .with_columns(
            pl.col("references").str.splitn("//", 2).struct.rename_fields(["customer_part", "bank_reference"])
        )
        .unnest("references")
        .with_columns(*_split_customer_reference(), pl.col("mark").str.to_uppercase())
        .collect(engine=_POLARS_ENGINE)
    )
    _report_entry_problems(parsed, problems)
    currencies = pl.Series("currency", page_currencies, dtype=pl.String())
    mark = pl.col("mark")
    lines = parsed.lazy().filter(pl.col("amount").is_not_null()).select(
        pl.col("page").cast(pl.Int32),
        pl.col("entry_sequence").cast(pl.Int32),
        "value_date",
        "entry_date",
        mark=mark,
        funds_code="funds_code",
        amount="amount",
        signed_amount=pl.when(mark.is_in(CREDIT_MARKS)).then(pl.col("amount")).otherwise(-pl.col("amount")),
        currency=pl.col("page").replace_strict(
            old=list(range(len(page_currencies))), new=currencies, return_dtype=pl.String()
        ),
        transaction_type="type",
        customer_reference=_none_if_empty(pl.col("customer_reference")),
        bank_reference=_none_if_empty(pl.col("bank_reference").str.strip_chars()),
        supplementary_details=_none_if_empty(pl.col("supplementary_details")),
        information=pl.col("information"),
    )
    return (
        _with_extracted_references(lines)
        .select([pl.col(name).cast(dtype) for name, dtype in LINE_SCHEMA.items()])
        .collect(engine=_POLARS_ENGINE)
    )


def _references_after_head() -> pl.Expr:
    """The rest of the first line after the head."""
    head_length = pl.sum_horizontal(pl.col(name).str.len_chars().fill_null(0) for name in _HEAD_GROUPS)
    return pl.col("first_line").str.slice(head_length).alias("references")


def _without_nonref_type() -> list[pl.Expr]:
    """A line without type code whose reference is NONREF (Penta "D20,00NONREF") reads as type "NONR" + "EF"."""
    misread = (pl.col("type") == "NONR") & pl.col("references").str.starts_with("EF")
    return [
        pl.when(misread).then(pl.lit("NONR") + pl.col("references")).otherwise("references").alias("references"),
        pl.when(~misread).then(pl.col("type").str.strip_chars()).alias("type"),
    ]


def _read_amount() -> pl.Expr:
    return pl.col("amount").str.replace(",", ".", literal=True).cast(AMOUNT_DTYPE, strict=False)


def _read_dates() -> list[pl.Expr]:
    """Value date YYMMDD (00-69: 20xx, 70-99: 19xx); entry date MMDD in the value date's year, or the year before
    or after when it lies more than six months after or before the value date's month."""
    written_value_date, written_entry_date = pl.col("value_date"), pl.col("entry_date")
    year = written_value_date.str.slice(0, 2).cast(pl.Int32, strict=False)
    year = year + pl.when(year >= 70).then(1900).otherwise(2000)
    value_month = written_value_date.str.slice(2, 2).cast(pl.Int32, strict=False)
    entry_month = written_entry_date.str.slice(0, 2).cast(pl.Int32, strict=False)  # null for "    "
    entry_year = year + pl.when(entry_month - value_month > 6).then(-1).when(value_month - entry_month > 6).then(1)
    value_date = written_value_date.str.to_date("%y%m%d", strict=False)
    same_day = written_entry_date == written_value_date.str.slice(2, 4)  # most lines: no second date to read
    other_day = pl.concat_str(entry_year.fill_null(year).cast(pl.String), pl.when(~same_day).then(written_entry_date))
    return [
        written_value_date.alias("written_value_date"),
        written_entry_date.alias("written_entry_date"),
        value_date.alias("value_date"),
        pl.when(same_day).then(value_date).otherwise(other_day.str.to_date("%Y%m%d", strict=False)).alias("entry_date"),
    ]


def _split_customer_reference() -> list[pl.Expr]:
    """Up to 16 characters are the reference; a longer one broken by whitespace at 16 (Rabobank: account number,
    padding, counterparty name) continues in the supplementary details. Longer without that break: kept whole."""
    part = pl.col("customer_part").str.strip_chars_end()
    limit = _SWIFT_REFERENCE_LENGTH
    long_part = pl.when(part.str.len_chars() > limit).then(part)
    overflows = long_part.str.slice(limit - 1, 2).str.contains(r"\s").fill_null(False)
    overflow = pl.when(overflows).then(long_part.str.slice(limit).str.strip_chars())
    details = pl.col("details").str.strip_chars()
    return [
        pl.when(overflows).then(long_part.str.slice(0, limit).str.strip_chars_end()).otherwise(part)
        .alias("customer_reference"),
        pl.concat_str(_none_if_empty(overflow), _none_if_empty(details), separator="\n", ignore_nulls=True)
        .alias("supplementary_details"),
    ]


def _none_if_empty(expr: pl.Expr) -> pl.Expr:
    return pl.when(expr != "").then(expr)


def _report_entry_problems(parsed: pl.DataFrame, problems: list[Problem]) -> None:
    faulty = parsed.filter(
        pl.col("mark").is_null()
        | pl.col("amount").is_null()
        | pl.col("value_date").is_null()
        | (pl.col("entry_date").is_null() & pl.col("written_entry_date").str.contains(r"\d"))
    ).select("page", "entry_sequence", "statement_line", "mark", "amount", "written_value_date", "value_date",
             "written_entry_date", "entry_date")
    for row in faulty.iter_rows(named=True):
        first_line = row["statement_line"].split("\n", 1)[0]
        if row["mark"] is None:
            message = f"unreadable statement line :61:{first_line} (line dropped)"
        elif row["amount"] is None:
            message = f"unreadable amount in :61:{first_line} (line dropped)"
        elif row["value_date"] is None:
            message = f"invalid value date {row['written_value_date']} in :61:{first_line}"
        else:
            message = f"invalid entry date {row['written_entry_date']} in :61:{first_line}"
        problems.append(Problem(PARSE_ERROR, message, row["page"], row["entry_sequence"]))


def _with_extracted_references(lines: pl.LazyFrame) -> pl.LazyFrame:
    """end_to_end_reference, return_reason, batch_reference, batch_count from the :86: text.

    Every extraction first keeps only the rows that contain its marker (a cheap literal search) and nulls the rest,
    so the costlier string operations run on those rows only.
    """
    flat, german, purpose, booking_text = pl.col("_flat"), pl.col("_german"), pl.col("_purpose"), pl.col("_booking")
    return (
        lines.with_columns(
            _flat=pl.coalesce(
                _only_containing(pl.col("information"), "\n", literal=True).str.replace_all("\n", "", literal=True),
                "information",
            )
        )
        .with_columns(_german=_only_containing(flat, _GERMAN_STRUCTURED))
        .with_columns(
            _purpose=pl.coalesce(
                german.str.extract_all(_PURPOSE_SUBFIELD).list.eval(pl.element().str.slice(3)).list.join(""), flat
            ),
            _booking=german.str.extract(r"\?00([^?]*)", 1).str.strip_chars(),
        )
        .with_columns(
            _eref_slash=_slash_value(flat, "EREF"),
            _eref_keyword=_keyword_value(purpose, "EREF"),
            _rtrn_slash=_slash_value(flat, "RTRN"),
            _rtrn_keyword=_keyword_value(purpose, "RTRN"),
            _reversal_booking=_only_containing(booking_text, _REVERSAL_WORDS),
            _reversal_word=_only_containing(purpose, _REVERSAL_WORDS).str.extract(_REVERSAL_WORDS, 1),
            _pref=_slash_value(flat, "PREF"),
            _nrtx=_only_containing(flat, "/NRTX/", literal=True).str.extract(r"/NRTX/ *([0-9]+)", 1),
            _posten=_only_containing(purpose, "Anzahl Posten", literal=True).str.extract(
                r"Anzahl Posten *:? *([0-9]+)", 1
            ),
        )
        .with_columns(
            _end_to_end=pl.coalesce(_none_if_empty(pl.col("_eref_slash")), _none_if_empty(pl.col("_eref_keyword"))),
            return_reason=pl.coalesce(
                _none_if_empty(pl.col("_rtrn_slash")),
                _none_if_empty(pl.col("_rtrn_keyword")),
                "_reversal_booking",
                "_reversal_word",
            ),
            batch_reference=_none_if_empty(pl.col("_pref")),
            batch_count=pl.coalesce("_nrtx", "_posten").cast(pl.Int64, strict=False),
        )
        .with_columns(
            end_to_end_reference=pl.when(~pl.col("_end_to_end").is_in(_PLACEHOLDER_REFERENCES)).then("_end_to_end")
        )
    )


def _only_containing(text: pl.Expr, pattern: str, *, literal: bool = False) -> pl.Expr:
    return pl.when(text.str.contains(pattern, literal=literal)).then(text)


def _slash_value(text: pl.Expr, code: str) -> pl.Expr:
    """The value after /CODE/ up to the next /CODE/ (ING separates fields with "//": trailing slashes go)."""
    value = _value_after(text, f"/{code}/").str.replace(f"{_NEXT_SLASH_CODE}.*$", "")
    return value.str.strip_chars(" \t/")


def _keyword_value(text: pl.Expr, keyword: str) -> pl.Expr:
    """The value after KEYWORD+ up to the next keyword, at most 35 characters (a SEPA reference)."""
    value = _value_after(text, f"{keyword}+").str.replace(f"{_NEXT_KEYWORD}.*$", "")
    return value.str.slice(0, _SEPA_REFERENCE_LENGTH).str.strip_chars()


def _value_after(text: pl.Expr, marker: str) -> pl.Expr:
    """What follows the first `marker`; null when there is none."""
    return _only_containing(text, marker, literal=True).str.splitn(marker, 2).struct.field("field_1")


__all__ = ["FORMAT", "NO_STATEMENT", "PARSE_ERROR", "count_raw_entries", "parse_mt940", "prepare"]
