"""ISO 20022 camt.053 (BankToCustomerStatement, versions .001.02 to .001.14) → the shared statement model.

Two paths, one answer. parse_camt053 / parse_camt053_chunks first try the fast path (camt053_scan.py: pyexpat
without callbacks decides well-formedness, a byte scanner and Polars string expressions read the entries, this
module's parser reads everything else). It returns exactly what this module's conforming parser returns, or
declines - on any problem to report and on anything outside the plain shape it understands (prefixes, CDATA,
comments or character references in entries, non-UTF-8, ...; see there). On a decline the conforming parser
(parse_camt053_conforming) reads the whole document. The rules below are the conforming parser's; the fast path
resolves the same rules per entry shape, and tests/test_camt053_fast_path.py checks that both agree.

The conforming parser streams: the document is fed to an ElementTree pull parser in chunks; every <Ntry> is turned
into a line and removed from the tree as soon as it is complete, every <Stmt> into a page as soon as it ends, so
the tree held in memory is one entry plus one statement header whatever the file size. Lines are buffered as
Python tuples only up to `_FRAME_BATCH_ROWS` and then packed into Polars frames.

Security: a first expat pass reads only the prolog (up to the root start tag) and refuses any DOCTYPE, so no
entity can be declared — no entity expansion, no external entity, no network, no file access. The main parser
sees no byte before that pass has reached the root element.

Mapping decisions (see also the module tests):
- Balances: OPBD → opening; PRCD (previously closed booked, used by e.g. German banks instead of OPBD) → opening
  when there is no OPBD, `opening_is_intermediate=False`. CLBD → closing, CLAV → closing available, FWAV →
  forward available (in document order). A balance with Tp/SubTp/Cd INTM (the MT940 :60M:/:62M: translation) sets
  the *_is_intermediate flag. Other types (OPAV, ITBD, ITAV, INFO, XPCD, proprietary) have no place in the model
  and are ignored. A second OPBD/PRCD/CLBD/CLAV of the same type → Problem DUPLICATE_BALANCE, first one kept.
- Entries: only booked entries (Sts BOOK, or no Sts at all) become lines and are counted in raw_entry_count;
  PDNG/INFO/FUTR entries are not on the booked balance, so keeping them would break opening + sum == closing.
  Marks: CRDT → C, DBIT → D, CRDT + RvslInd → RD, DBIT + RvslInd → RC.
- EndToEndId: the first TxDtls' EndToEndId goes to customer_reference as written and to end_to_end_reference,
  except "NOTPROVIDED" (→ null) and except batch bookings with several TxDtls (→ null: one payment's reference
  must not stand for the whole batch amount; the batch is matched by batch_reference + batch_count).
- An entry whose amount, indicator, dates or Btch/NbOfTxs cannot be read → Problem INVALID_ENTRY and no line; it
  still counts in raw_entry_count, so the integrity checks report LINE_COUNT_MISMATCH as well.
- A document that breaks off (MALFORMED_XML) keeps the statements completed before the error, without lines of
  the statement it broke in.

Speed: the conforming parser's cost is ElementTree's (one Element per XML element plus one start and one end event
each): about 12,000 entries/s on the 2-core dev machine. The fast path needs 6-7 times less CPU (pyexpat alone is
about 40% of it) and reads 55,000-88,000 entries/s there depending on the load. bench/bench_camt053.py measures
both; see there for the figures and what was tried.
"""

from __future__ import annotations

import re
import tempfile
import xml.parsers.expat
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from xml.etree.ElementTree import Element, ParseError, XMLPullParser

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

FORMAT = "CAMT053"
NAMESPACE_PREFIX = "urn:iso:std:iso:20022:tech:xsd:camt.053.001."
SUPPORTED_VERSIONS = tuple(f"{number:02d}" for number in range(2, 15))

MALFORMED_XML = "MALFORMED_XML"
FORBIDDEN_XML_CONSTRUCT = "FORBIDDEN_XML_CONSTRUCT"
UNSUPPORTED_VERSION = "UNSUPPORTED_VERSION"
NO_STATEMENT = "NO_STATEMENT"
INVALID_ENTRY = "INVALID_ENTRY"
INVALID_BALANCE = "INVALID_BALANCE"
DUPLICATE_BALANCE = "DUPLICATE_BALANCE"
INTERNAL_ERROR = "INTERNAL_ERROR"

NOT_PROVIDED = "NOTPROVIDED"

_CHUNK_SIZE = 256 * 1024
_FRAME_BATCH_ROWS = 20_000
_SNIFF_BYTES = 8192
_SPOOL_MEMORY_BYTES = 16 << 20  # parse_camt053_chunks on an iterator: copy kept in memory up to this, then on disk

# xs:decimal as banks write it; at most 6 decimals because the model stores Decimal(38, 6).
_AMOUNT_RE = re.compile(r"[0-9]{1,18}(?:\.[0-9]{1,6})?")  # [0-9], not \d: \d also takes "１" (full-width)
_COUNT_RE = re.compile(r"[0-9]{1,15}")  # Max15NumericText (str.isdigit would also take "²")
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_TRUE = frozenset({"true", "1"})
_BALANCE_CODES = frozenset({"OPBD", "PRCD", "CLBD", "CLAV", "FWAV"})

# Element local names the parser looks at; the namespace of the document is put in front of each.
_NAMES = (
    "Document BkToCstmrStmt Stmt Id ElctrncSeqNb LglSeqNb StmtPgntn PgNb Acct IBAN Othr Bal Tp CdOrPrtry SubTp Cd "
    "Prtry Amt CdtDbtInd Dt DtTm AddtlStmtInf Ntry RvslInd Sts BookgDt ValDt AcctSvcrRef BkTxCd Domn Fmly SubFmlyCd "
    "NtryDtls Btch PmtInfId NbOfTxs TxDtls Refs EndToEndId RtrInf Rsn RmtInf Ustrd AddtlNtryInf"
).split()


class _Stop(Exception):
    """Ends parsing early with one file-level problem."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.problem = Problem(code, message)


class _InvalidValue(ValueError):
    pass


# --------------------------------------------------------------------------------------------------------- sniffing


def looks_like_camt053(data: bytes) -> bool:
    """Cheap check on the first bytes: an XML document in a camt.053 namespace (any version, supported or not)."""
    head = bytes(data[:_SNIFF_BYTES])
    text = _decode_head(head)
    return text.lstrip().startswith("<") and "urn:iso:std:iso:20022:tech:xsd:camt.053." in text


def _decode_head(head: bytes) -> str:
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        encoding = "utf-16"
    elif head.startswith(b"<\x00"):
        encoding = "utf-16-le"
    elif head.startswith(b"\x00<"):
        encoding = "utf-16-be"
    else:
        encoding = "utf-8-sig"
    return head.decode(encoding, errors="ignore")


# ---------------------------------------------------------------------------------------------------------- parsing


def parse_camt053(data: bytes) -> ParsedStatementFile:
    """Parse a camt.053 document. Never raises: anything wrong with the file is reported in `problems`.

    The fast path (camt053_scan) answers when the document has the plain shape it understands; otherwise the
    conforming parser reads the whole document. Both give the same result.
    """
    from bridge_pipelines.statements.camt053_scan import scan_camt053

    parsed = scan_camt053(data)
    return parsed if parsed is not None else parse_camt053_conforming(data)


def parse_camt053_chunks(chunks: Iterable[bytes | memoryview]) -> ParsedStatementFile:
    """Same as parse_camt053 for a document given as consecutive pieces (e.g. read from a file in blocks).

    A sequence (list, tuple) of pieces is read again when the fast path declines. Any other iterable is read once:
    what the fast path consumed is kept in a spooled temporary file (memory up to _SPOOL_MEMORY_BYTES, then disk)
    so that the conforming parser can re-read it.
    """
    from bridge_pipelines.statements.camt053_scan import scan_camt053_chunks

    if isinstance(chunks, Sequence):
        parsed = scan_camt053_chunks(chunks)
        return parsed if parsed is not None else parse_camt053_conforming_chunks(chunks)
    with _Recording(chunks) as recording:
        parsed = scan_camt053_chunks(recording)
        return parsed if parsed is not None else parse_camt053_conforming_chunks(recording.replay())


def parse_camt053_conforming(data: bytes) -> ParsedStatementFile:
    """The conforming (ElementTree) parser alone; parse_camt053 uses it when the fast path declines."""
    view = memoryview(data)
    chunks = (view[offset : offset + _CHUNK_SIZE] for offset in range(0, len(view), _CHUNK_SIZE))
    return parse_camt053_conforming_chunks(chunks)


def parse_camt053_conforming_chunks(chunks: Iterable[bytes | memoryview]) -> ParsedStatementFile:
    """parse_camt053_conforming for a document given in pieces."""
    parser = _Camt053Parser()
    try:
        parser.run(chunks)
    except _Stop as stop:
        parser.problems.append(stop.problem)
    except Exception as exc:  # the contract is "never raise on any input"; a bug here must not kill the pipeline
        parser.problems.append(Problem(INTERNAL_ERROR, f"camt.053 parser failed: {type(exc).__name__}: {exc}"))
    return parser.result()


class _Recording:
    """Passes pieces through once, keeping a copy for a second reading: in memory up to _SPOOL_MEMORY_BYTES, then in
    a temporary file; if that copy fails (disk full, a piece that is not bytes), the pieces from there on are kept
    as they are, in memory."""

    def __init__(self, chunks: Iterable[bytes | memoryview]) -> None:
        self._chunks = chunks
        self._source: Iterator[bytes | memoryview] | None = None  # iter() only when read: never raise here
        self._spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_MEMORY_BYTES)  # noqa: SIM115
        self._kept: list[bytes | memoryview] = []

    def __enter__(self) -> _Recording:
        return self

    def __exit__(self, *_: object) -> None:
        self._spool.close()

    def __iter__(self) -> Iterator[bytes | memoryview]:
        self._source = iter(self._chunks)
        for chunk in self._source:
            if not self._kept:
                try:
                    self._spool.write(chunk)
                except Exception:  # noqa: BLE001 - kept below instead
                    self._keep(chunk)
            else:
                self._keep(chunk)
            yield chunk

    def _keep(self, chunk: bytes | memoryview) -> None:
        self._kept.append(bytes(chunk) if isinstance(chunk, bytearray | memoryview) else chunk)  # callers reuse buffers

    def replay(self) -> Iterator[bytes | memoryview]:
        """The pieces read so far, then the ones never read."""
        self._spool.seek(0)
        while block := self._spool.read(_CHUNK_SIZE):
            yield block
        yield from self._kept
        yield from self._source if self._source is not None else self._chunks


class _PrologGuard:
    """Expat pass over the prolog only: refuses DOCTYPE (and so any ENTITY), learns the declared encoding."""

    class _RootReached(Exception):
        pass

    def __init__(self) -> None:
        self.done = False
        self.encoding: str | None = None
        self._expat = xml.parsers.expat.ParserCreate()
        self._expat.XmlDeclHandler = self._on_xml_declaration
        self._expat.StartDoctypeDeclHandler = self._on_doctype
        self._expat.EntityDeclHandler = self._on_entity
        self._expat.StartElementHandler = self._on_root

    def feed(self, chunk: bytes | memoryview, final: bool = False) -> None:
        try:
            self._expat.Parse(chunk, final)
        except self._RootReached:
            self.done = True
        except xml.parsers.expat.ExpatError as error:
            raise _Stop(MALFORMED_XML, f"not well-formed XML: {error}") from None
        except (LookupError, UnicodeError) as error:  # e.g. encoding="UT3-8" in the XML declaration
            raise _Stop(MALFORMED_XML, f"unreadable encoding: {error}") from None

    def _on_xml_declaration(self, version: str, encoding: str | None, standalone: int) -> None:
        self.encoding = encoding

    def _on_doctype(self, name: str, *_: object) -> None:
        raise _Stop(FORBIDDEN_XML_CONSTRUCT, f"document type declaration <!DOCTYPE {name}> is not allowed")

    def _on_entity(self, name: str, *_: object) -> None:
        raise _Stop(FORBIDDEN_XML_CONSTRUCT, f"entity declaration <!ENTITY {name}> is not allowed")

    def _on_root(self, name: str, attributes: object) -> None:
        raise self._RootReached


@dataclass
class _Entry:
    """The fields of one <Ntry> that become a line (amount kept as validated text, cast in bulk by Polars)."""

    amount: str
    mark: str
    currency: str | None
    value_date: date | None
    entry_date: date | None
    transaction_type: str | None = None
    bank_reference: str | None = None
    customer_reference: str | None = None
    end_to_end_reference: str | None = None
    return_reason: str | None = None
    batch_reference: str | None = None
    batch_count: int | None = None
    information: str | None = None


@dataclass
class _Details:
    """What NtryDtls (all of them, all their TxDtls) contribute to a line."""

    transaction_count: int = 0
    end_to_end_id: str | None = None
    return_reason: str | None = None
    batch_payment_id: str | None = None
    batch_count_text: str | None = None
    batch_seen: bool = False
    return_seen: bool = False
    tx_payment_id: str | None = None
    remittance: list[str] = field(default_factory=list)


class _LineBuffer:
    """Collects lines as tuples and packs them into Polars frames every `_FRAME_BATCH_ROWS` rows."""

    _PYTHON_COLUMNS = (
        "page", "entry_sequence", "value_date", "entry_date", "mark", "amount", "currency", "transaction_type",
        "customer_reference", "bank_reference", "information", "end_to_end_reference", "return_reason",
        "batch_reference", "batch_count",
    )  # fmt: skip

    def __init__(self) -> None:
        self._rows: list[tuple[object, ...]] = []
        self._frames: list[pl.DataFrame] = []

    def add(self, page: int, sequence: int, entry: _Entry) -> None:
        self._rows.append((
            page, sequence, entry.value_date, entry.entry_date, entry.mark, entry.amount, entry.currency,
            entry.transaction_type, entry.customer_reference, entry.bank_reference, entry.information,
            entry.end_to_end_reference, entry.return_reason, entry.batch_reference, entry.batch_count,
        ))  # fmt: skip
        if len(self._rows) >= _FRAME_BATCH_ROWS:
            self._flush()

    def drop_page(self, page: int) -> None:
        """Forget the lines of a page that could not be completed (document ended inside it)."""
        self._flush()
        self._frames = [frame.filter(pl.col("page") != page) for frame in self._frames]

    def frame(self) -> pl.DataFrame:
        self._flush()
        if not self._frames:
            return empty_lines()
        return pl.concat(self._frames, how="vertical", rechunk=False)  # no second copy of all lines

    def _flush(self) -> None:
        if not self._rows:
            return
        columns = dict(zip(self._PYTHON_COLUMNS, zip(*self._rows)))
        self._rows = []
        schema = {name: pl.String() if name == "amount" else LINE_SCHEMA[name] for name in self._PYTHON_COLUMNS}
        amount = pl.col("amount")
        frame = pl.DataFrame(columns, schema=schema).with_columns(
            amount.cast(AMOUNT_DTYPE),  # text validated by _AMOUNT_RE: the cast cannot fail
            pl.when(pl.col("mark").is_in(CREDIT_MARKS))
            .then(amount.cast(AMOUNT_DTYPE))
            .otherwise(-amount.cast(AMOUNT_DTYPE))
            .alias("signed_amount"),
            pl.lit(None, dtype=pl.String).alias("funds_code"),
            pl.lit(None, dtype=pl.String).alias("supplementary_details"),
        )
        self._frames.append(frame.select(pl.col(name).cast(dtype) for name, dtype in LINE_SCHEMA.items()))


class _Camt053Parser:
    def __init__(self) -> None:
        self.pages: list[StatementPage] = []
        self.problems: list[Problem] = []
        self.encoding: str | None = None
        self._lines = _LineBuffer()
        self._names: dict[str, str] = {}  # "{namespace}Local" -> "Local"
        self._tags: dict[str, str] = {}  # "Local" -> "{namespace}Local"
        self._root_seen = False
        self._container: Element | None = None  # BkToCstmrStmt
        self._statement: Element | None = None  # the open Stmt
        self._statement_count = 0
        self._entry_count = 0  # booked <Ntry> in the open Stmt
        self._finished = False

    # ---- driving the pull parser

    def run(self, chunks: Iterable[bytes | memoryview]) -> None:
        guard = _PrologGuard()
        pull = XMLPullParser(events=("start", "end"))
        pending: list[bytes | memoryview] = []  # bytes the guard has not yet cleared
        for chunk in chunks:
            if not guard.done:
                guard.feed(chunk)
                pending.append(chunk)
                if not guard.done:
                    continue
                self.encoding = guard.encoding or _encoding_without_declaration(bytes(pending[0][:2]))
                chunk_list, pending = pending, []
            else:
                chunk_list = [chunk]
            for piece in chunk_list:
                pull.feed(piece)
                self._consume(pull.read_events())
        if not guard.done:
            guard.feed(b"", final=True)  # raises MALFORMED_XML (no root element)
        try:
            pull.close()
        except ParseError as error:
            self._malformed(error)
        self._consume(pull.read_events())
        if not self._statement_count:
            raise _Stop(NO_STATEMENT, "the document contains no <Stmt>")
        self._finished = True

    def _consume(self, events: Iterator[tuple[str, Element]]) -> None:
        tags = self._tags
        ntry_tag, stmt_tag = tags.get("Ntry"), tags.get("Stmt")
        try:
            for event, element in events:
                if event == "end":
                    tag = element.tag
                    if tag == ntry_tag:
                        self._on_entry(element)
                    elif tag == stmt_tag:
                        self._on_statement_end(element)
                elif not self._root_seen:
                    self._on_root(element)
                    tags = self._tags
                    ntry_tag, stmt_tag = tags["Ntry"], tags["Stmt"]
                elif element.tag == stmt_tag:
                    self._on_statement_start(element)
                elif element.tag == tags["BkToCstmrStmt"]:
                    self._container = element
        except ParseError as error:
            self._malformed(error)

    def _malformed(self, error: ParseError) -> None:
        line, column = getattr(error, "position", (None, None))
        raise _Stop(MALFORMED_XML, f"not well-formed XML at line {line}, column {column}: {error}")

    def _on_root(self, root: Element) -> None:
        self._root_seen = True
        namespace, _, local = root.tag[1:].partition("}") if root.tag.startswith("{") else ("", "", root.tag)
        version = namespace[len(NAMESPACE_PREFIX) :] if namespace.startswith(NAMESPACE_PREFIX) else None
        if local != "Document" or version not in SUPPORTED_VERSIONS:
            found = f"{{{namespace}}}{local}" if namespace else local
            raise _Stop(
                UNSUPPORTED_VERSION,
                f"root element {found} is not a camt.053.001.{SUPPORTED_VERSIONS[0]}-{SUPPORTED_VERSIONS[-1]} "
                "Document",
            )
        self._tags = {name: f"{{{namespace}}}{name}" for name in _NAMES}
        self._names = {tag: name for name, tag in self._tags.items()}

    def result(self) -> ParsedStatementFile:
        if not self._finished and self._statement is not None:
            self._lines.drop_page(len(self.pages))  # the document broke inside this Stmt: keep completed pages only
        return ParsedStatementFile(
            format=FORMAT, pages=self.pages, lines=self._lines.frame(), problems=self.problems, encoding=self.encoding
        )

    # ---- statements

    def _on_statement_start(self, statement: Element) -> None:
        self._statement = statement
        self._entry_count = 0

    def _on_statement_end(self, statement: Element) -> None:
        page_index = len(self.pages)
        self.pages.append(self._read_page(statement, page_index))
        self._statement_count += 1
        self._statement = None
        if self._container is not None:
            _detach(self._container, statement)

    def _read_page(self, statement: Element, page_index: int) -> StatementPage:
        names = self._names
        page = StatementPage(transaction_reference=None, account=None, raw_entry_count=self._entry_count)
        electronic = legal = None
        information: list[str] = []
        balances: dict[str, tuple[Balance, bool]] = {}
        for child in statement:  # entries were detached already: these are the header elements
            name = names.get(child.tag)
            if name == "Id":
                page.transaction_reference = _text(child)
            elif name == "ElctrncSeqNb":
                electronic = _text(child)
            elif name == "LglSeqNb":
                legal = _text(child)
            elif name == "StmtPgntn":
                page.sequence_number = _text(child.find(self._tags["PgNb"]))
            elif name == "Acct":
                page.account = self._account_id(child)
            elif name == "Bal":
                self._collect_balance(child, page_index, balances, page.forward_available_balances)
            elif name == "AddtlStmtInf" and _text(child):
                information.append(_text(child) or "")
        page.statement_number = electronic if electronic is not None else legal
        page.information = "\n".join(information) or None
        # OPBD wins over PRCD whatever their order.
        opening = balances.get("OPBD") or balances.get("PRCD")
        if opening is not None:
            page.opening_balance, page.opening_is_intermediate = opening
        if "CLBD" in balances:
            page.closing_balance, page.closing_is_intermediate = balances["CLBD"]
        if "CLAV" in balances:
            page.closing_available_balance = balances["CLAV"][0]
        return page

    def _account_id(self, account: Element) -> str | None:
        tags = self._tags
        identification = account.find(tags["Id"])
        if identification is None:
            return None
        iban = identification.find(tags["IBAN"])
        if iban is not None:
            return _text(iban)
        return _text(_path(identification, tags["Othr"], tags["Id"]))

    def _collect_balance(
        self,
        element: Element,
        page_index: int,
        balances: dict[str, tuple[Balance, bool]],
        forward: list[Balance],
    ) -> None:
        tags = self._tags
        code = _text(_path(element, tags["Tp"], tags["CdOrPrtry"], tags["Cd"]))
        if code not in _BALANCE_CODES:
            return
        intermediate = _text(_path(element, tags["Tp"], tags["SubTp"], tags["Cd"])) == "INTM"
        try:
            balance = self._balance(element)
        except _InvalidValue as error:
            self.problems.append(Problem(INVALID_BALANCE, f"{code} balance: {error}", page=page_index))
            return
        if code == "FWAV":
            forward.append(balance)
        elif code in balances:
            self.problems.append(
                Problem(DUPLICATE_BALANCE, f"more than one {code} balance; the first one is used", page=page_index)
            )
        else:
            balances[code] = (balance, intermediate)

    def _balance(self, element: Element) -> Balance:
        tags = self._tags
        amount_element = element.find(tags["Amt"])
        amount_text = _text(amount_element)
        if amount_text is None or not _AMOUNT_RE.fullmatch(amount_text):
            raise _InvalidValue(f"amount {amount_text!r} is not a non-negative decimal")
        currency = amount_element.get("Ccy") if amount_element is not None else None
        if not currency:
            raise _InvalidValue("amount has no Ccy")
        indicator = _text(element.find(tags["CdtDbtInd"]))
        if indicator not in ("CRDT", "DBIT"):
            raise _InvalidValue(f"CdtDbtInd {indicator!r} is not CRDT or DBIT")
        balance_date = _choice_date(element.find(tags["Dt"]))
        if balance_date is None:
            raise _InvalidValue("no date")
        return Balance(
            mark="D" if indicator == "DBIT" else "C", date=balance_date, currency=currency, amount=Decimal(amount_text)
        )

    # ---- entries

    def _on_entry(self, entry_element: Element) -> None:
        statement = self._statement
        if statement is None:  # an <Ntry> outside any <Stmt>: not camt.053, ignore it
            return
        status = self._status(entry_element)
        if status is None or status == "BOOK":
            self._entry_count += 1
            sequence = self._entry_count
            page_index = len(self.pages)
            try:
                entry = self._read_entry(entry_element)
            except _InvalidValue as error:
                self.problems.append(Problem(INVALID_ENTRY, str(error), page=page_index, entry_sequence=sequence))
            else:
                self._lines.add(page_index, sequence, entry)
        _detach(statement, entry_element)

    def _status(self, entry_element: Element) -> str | None:
        status = entry_element.find(self._tags["Sts"])
        if status is None:
            return None
        # <Sts>BOOK</Sts> up to .06, <Sts><Cd>BOOK</Cd></Sts> from .07 (some files mix both).
        return _text(status) or _text(status.find(self._tags["Cd"])) or _text(status.find(self._tags["Prtry"]))

    def _read_entry(self, entry_element: Element) -> _Entry:
        names = self._names
        amount = currency = indicator = transaction_type = bank_reference = additional = None
        reversal = False
        value_date = entry_date = None
        details = _Details()
        for child in entry_element:
            name = names.get(child.tag)
            if name == "Amt":
                amount, currency = _text(child), child.get("Ccy")
            elif name == "CdtDbtInd":
                indicator = _text(child)
            elif name == "RvslInd":
                reversal = _text(child) in _TRUE
            elif name == "BookgDt":
                entry_date = _choice_date(child)
            elif name == "ValDt":
                value_date = _choice_date(child)
            elif name == "AcctSvcrRef":
                bank_reference = _text(child)
            elif name == "BkTxCd":
                transaction_type = self._transaction_code(child)
            elif name == "NtryDtls":
                self._read_details(child, details)
            elif name == "AddtlNtryInf":
                additional = _text(child)
        if amount is None or not _AMOUNT_RE.fullmatch(amount):
            raise _InvalidValue(f"amount {amount!r} is not a non-negative decimal with at most 6 decimals")
        if indicator == "CRDT":
            mark = "RD" if reversal else "C"
        elif indicator == "DBIT":
            mark = "RC" if reversal else "D"
        else:
            raise _InvalidValue(f"CdtDbtInd {indicator!r} is not CRDT or DBIT")
        return self._entry_from(
            amount, mark, currency, value_date, entry_date, transaction_type, bank_reference, additional, details
        )

    def _entry_from(
        self,
        amount: str,
        mark: str,
        currency: str | None,
        value_date: date | None,
        entry_date: date | None,
        transaction_type: str | None,
        bank_reference: str | None,
        additional: str | None,
        details: _Details,
    ) -> _Entry:
        is_batch = details.transaction_count > 1
        batch_count = details.batch_count_text
        if batch_count is not None:
            if not _COUNT_RE.fullmatch(batch_count):
                raise _InvalidValue(f"Btch/NbOfTxs {batch_count!r} is not a number")
            count: int | None = int(batch_count)
        else:
            count = details.transaction_count if is_batch else None
        end_to_end = details.end_to_end_id
        information = [] if is_batch else list(details.remittance)
        if additional:
            information.append(additional)
        return _Entry(
            amount=amount,
            mark=mark,
            currency=currency,
            value_date=value_date,
            entry_date=entry_date,
            transaction_type=transaction_type,
            bank_reference=bank_reference,
            customer_reference=end_to_end,
            end_to_end_reference=None if end_to_end == NOT_PROVIDED or is_batch else end_to_end,
            return_reason=details.return_reason,
            batch_reference=details.batch_payment_id or (details.tx_payment_id if is_batch else None),
            batch_count=count,
            information="\n".join(information) or None,
        )

    def _transaction_code(self, code: Element) -> str | None:
        tags = self._tags
        domain = code.find(tags["Domn"])
        if domain is not None:
            family = domain.find(tags["Fmly"])
            parts = [_text(domain.find(tags["Cd"]))]
            if family is not None:
                parts += [_text(family.find(tags["Cd"])), _text(family.find(tags["SubFmlyCd"]))]
            joined = "/".join(part for part in parts if part)
            if joined:
                return joined
        return _text(_path(code, tags["Prtry"], tags["Cd"]))

    def _read_details(self, entry_details: Element, details: _Details) -> None:
        tags = self._tags
        batch_tag, transaction_tag = tags["Btch"], tags["TxDtls"]
        for child in entry_details:
            if child.tag == transaction_tag:
                details.transaction_count += 1
                self._read_transaction(child, details, first=details.transaction_count == 1)
            elif child.tag == batch_tag and not details.batch_seen:
                details.batch_seen = True
                details.batch_payment_id = _text(child.find(tags["PmtInfId"]))
                details.batch_count_text = _text(child.find(tags["NbOfTxs"]))

    def _read_transaction(self, transaction: Element, details: _Details, first: bool) -> None:
        tags = self._tags
        if first:  # references come from the first TxDtls only
            references = transaction.find(tags["Refs"])
            if references is not None:
                details.end_to_end_id = _text(references.find(tags["EndToEndId"]))
                details.tx_payment_id = _text(references.find(tags["PmtInfId"]))
        if not details.return_seen:  # the first RtrInf of the entry gives the reason
            return_information = transaction.find(tags["RtrInf"])
            if return_information is not None:
                details.return_seen = True
                reason = return_information.find(tags["Rsn"])
                if reason is not None:
                    details.return_reason = _text(reason.find(tags["Cd"])) or _text(reason.find(tags["Prtry"]))
        remittance = transaction.find(tags["RmtInf"])
        if remittance is not None:
            details.remittance.extend(text for text in map(_text, remittance.iterfind(tags["Ustrd"])) if text)


# ---------------------------------------------------------------------------------------------------------- helpers


def _text(element: Element | None) -> str | None:
    """Stripped text of an element, None when absent or empty."""
    if element is None or element.text is None:
        return None
    return element.text.strip() or None


def _path(element: Element, *tags: str) -> Element | None:
    current: Element | None = element
    for tag in tags:
        if current is None:
            return None
        current = current.find(tag)
    return current


def _choice_date(choice: Element | None) -> date | None:
    """Date of a DateAndDateTime choice (<Dt> or <DtTm>, any precision and zone; the date as written is kept)."""
    if choice is None or not len(choice):
        return None
    text = _text(choice[0])
    if text is None:
        raise _InvalidValue("empty date")
    if not _DATE_RE.match(text) or (len(text) > 10 and text[10] not in "T+-Z"):
        raise _InvalidValue(f"date {text!r} is not an ISO date or date-time")
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        raise _InvalidValue(f"date {text!r} is not a valid date") from None


def _encoding_without_declaration(head: bytes) -> str:
    return "UTF-16" if head in (b"\xff\xfe", b"\xfe\xff") else "UTF-8"


def _detach(parent: Element, child: Element) -> None:
    """Drop a processed element from the tree so that memory stays flat."""
    try:
        parent.remove(child)
    except ValueError:  # not a direct child (schema-invalid nesting): clearing it is enough
        child.clear()
