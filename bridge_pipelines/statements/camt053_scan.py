"""Fast path of the camt.053 parser: the conforming parser's answer, or no answer at all.

`scan_camt053` / `scan_camt053_chunks` return exactly what the conforming parser (camt053.py) returns, or None
when the document is not in the plain shape this path understands; camt053.parse_camt053 then parses the whole
file again with the conforming (ElementTree) parser. So the fast path can make a parse faster, never different:
whatever it is not sure about, it declines. `fast_path_decline_reason` says why (tests, diagnostics).

How a document is read:
1. Security and well-formedness are decided by real XML parsers. The conforming parser's prolog guard runs first
   (DOCTYPE, hence any entity declaration, refused: no entity expansion, no external access; no byte reaches
   another parser before the root element). Then pyexpat, created as ElementTree creates it (namespace mode),
   reads every byte with no Python callbacks, at C speed (`_Validator`). pyexpat holds the GIL and Polars releases
   it, so this runs in a thread of its own, overlapping with the extraction. The verdict is awaited at the end;
   a document it finds not well-formed is declined (the conforming parser then reports MALFORMED_XML).
2. A byte scanner cuts the document into *runs* of entries (`<Ntry>...</Ntry>` blocks with only XML whitespace
   between them; a long run is cut into windows of about `_WINDOW_BYTES` at a `</Ntry>`) and everything else.
   Everything else - prolog, GrpHdr, statement headers, balances, AddtlStmtInf, closing tags, any text or comment
   between runs - goes, in document order, to an instance of the conforming parser itself (`_HeaderParser`), with
   each run replaced by one placeholder element `<Ntry fastPathWindow="<random token>-<n>"/>`. That parser builds
   the pages, balances, statement numbers, balance problems and encoding exactly as it does for the whole file.
   At each placeholder it records the run's page index and its own booked-entry count, which number the run's
   lines (entry_sequence) and count towards raw_entry_count, as real entries would. A placeholder that does not
   arrive, in order, as an <Ntry> of an open <Stmt> (the run was inside a comment, CDATA, a processing
   instruction, outside any statement, or under another default namespace), or any <Ntry> that is not one of the
   placeholders (`<ns2:Ntry>`, `<Ntry attr="...">`, ... which the scanner does not cut out), declines.
3. Runs are extracted in batches of about `_WINDOW_BYTES` (so many small statements cost one Polars pass, not one
   each), column-wise with Polars (Rust) string expressions over a column of entry blocks. A block's *skeleton*
   (its tags, the text between them removed) is its shape; a file has a handful. Each new shape is analysed once
   in Python: its tags are parsed with a strict grammar and the conforming parser's rules are resolved on it to
   "the text after tag number j" slots: the first Sts and its Cd/Prtry, Amt and its Ccy, CdtDbtInd, RvslInd, the
   date choice's first child (Dt or DtTm), AcctSvcrRef, Domn/Cd + Fmly/Cd + SubFmlyCd else Prtry/Cd, every
   NtryDtls, the first TxDtls' Refs/EndToEndId and PmtInfId, the number of TxDtls (batch), the first RtrInf's
   Rsn/Cd else Prtry, the first Btch's PmtInfId and NbOfTxs, every RmtInf/Ustrd (not for batches), AddtlNtryInf.
   The blocks are split on "<" and each field is a gather of its slot in every row, read as ElementTree + `_text`
   would read it (line ends normalised, the five predefined entities unescaped, stripped, empty -> null).
   Non-booked entries (PDNG/INFO/FUTR) are dropped before any check, as the conforming parser skips them. Booked
   values are checked with ASCII rules that accept a subset of what the conforming parser accepts; any value it
   would refuse (INVALID_ENTRY) or that the rules do not cover (non-ASCII digits, ...) declines.

Declined, so read by the conforming parser: every document for which it reports a problem (MALFORMED_XML,
FORBIDDEN_XML_CONSTRUCT, UNSUPPORTED_VERSION, NO_STATEMENT, INVALID_BALANCE, DUPLICATE_BALANCE, INVALID_ENTRY),
documents not in UTF-8 (declared encoding, UTF-16), and, inside an entry: element or attribute prefixes, xmlns
attributes, CDATA sections, comments, processing instructions, character references (`&#...;`), single-quoted
attribute values or values holding `&`, `<`, `>`, tab or line ends, non-ASCII element names, non-whitespace text
after the last child of an Ntry, a nested Ntry/Stmt/BkToCstmrStmt, and a repeated Amt, CdtDbtInd, RvslInd, Sts,
BookgDt, ValDt, AcctSvcrRef, BkTxCd or AddtlNtryInf child of one Ntry (schema-invalid).

Memory is flat in the file size: the scanner holds at most about one window plus one input piece, a batch about one
window, the validator queue `_VALIDATOR_QUEUE_SLICES` slices; what grows is the result (the lines frame).
parse_camt053(data) re-reads `data` when the fast path declines; for an iterator of chunks (which cannot be read
twice) camt053.parse_camt053_chunks keeps a copy in a spooled temporary file.

Speed: see bench/bench_camt053.py for the figures and where the time goes.
"""

from __future__ import annotations

import logging
import queue
import re
import secrets
import threading
import xml.parsers.expat
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from xml.etree.ElementTree import Element

import polars as pl

from bridge_pipelines.statements.camt053 import (
    FORMAT,
    _Camt053Parser,
    _detach,
    _PrologGuard,
    _Stop,
)
from bridge_pipelines.statements.model import (
    AMOUNT_DTYPE,
    CREDIT_MARKS,
    LINE_SCHEMA,
    ParsedStatementFile,
    empty_lines,
)

log = logging.getLogger(__name__)

_WINDOW_BYTES = 4 << 20  # entry bytes extracted per Polars pass; bounds the working memory
_INPUT_PIECE_BYTES = 1 << 20  # parse_camt053(data) hands `data` to the scanner in pieces of this size
_VALIDATE_IN_THREAD = True  # expat (holds the GIL) overlaps with Polars (releases it)
_VALIDATOR_SLICE_BYTES = 128 << 10  # expat holds the GIL for one slice at a time
_VALIDATOR_QUEUE_SLICES = 64  # at most this many slices wait for the validator: memory stays bounded
_MARKER_ATTRIBUTE = "fastPathWindow"

_NTRY_OPEN = b"<Ntry>"
_NTRY_CLOSE = b"</Ntry>"
# A </Ntry> not followed by (whitespace and) another <Ntry>: where a run of entries ends.
_RUN_END_RE = re.compile(rb"</Ntry>[ \t\r\n]*+(?!<Ntry>)")
_XML_SPACE = " \t\r\n"
_SPACE_RE = re.compile(rb"[ \t\r\n]*")

# The tag grammar of the plain shape (applied to skeletons): unprefixed ASCII names, double-quoted attribute values
# without references, line ends or markup characters. Anything else in an entry declines.
_NAME = r"[A-Za-z_][A-Za-z0-9_.\-]*"
_TAG_RE = re.compile(
    rf'<(?P<end>/)?(?P<name>{_NAME})(?P<attributes>(?:[ \t\r\n]+{_NAME}[ \t\r\n]*=[ \t\r\n]*"[^"<>&\t\n\r]*")*)'
    r"[ \t\r\n]*(?P<empty>/)?>"
)
_ATTRIBUTE_RE = re.compile(rf'({_NAME})[ \t\r\n]*=[ \t\r\n]*"([^"<>&\t\n\r]*)"')
_STRUCTURAL_NAMES = frozenset({"Ntry", "Stmt", "BkToCstmrStmt"})  # names the conforming parser reacts to
_SINGLE_CHILDREN = ("Amt", "CdtDbtInd", "RvslInd", "Sts", "BookgDt", "ValDt", "AcctSvcrRef", "BkTxCd", "AddtlNtryInf")

# Rust-regex versions of the conforming parser's checks, restricted to ASCII (Python's \d also takes other digits:
# such values are declined and left to the conforming parser).
_AMOUNT_PATTERN = r"^[0-9]{1,18}(?:\.[0-9]{1,6})?$"
_COUNT_PATTERN = r"^[0-9]{1,15}$"
_DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}(?:$|[T+\-Z])"

# Text fields of an entry, each the text of one element of the shape (or absent).
_SLOT_FIELDS = (
    "sts_text", "sts_cd", "sts_prtry", "amount", "indicator", "reversal", "booking_date", "value_date", "bank_ref",
    "domain_cd", "family_cd", "sub_family_cd", "proprietary_cd", "end_to_end", "tx_payment_id", "return_cd",
    "return_proprietary", "batch_payment_id", "batch_count_text", "additional",
)  # fmt: skip
_REMITTANCE = "remittance"
_SENTINEL_PREFIX = "@"  # column-name prefix of the per-row slot positions


class _Decline(Exception):
    """The document is not in the shape the fast path understands; the conforming parser reads it."""


# ------------------------------------------------------------------------------------------------------ public API


def scan_camt053(data: bytes | bytearray | memoryview) -> ParsedStatementFile | None:
    """The fast path alone: the result of the conforming parser for `data`, or None when it declines."""
    return _scan(_pieces(data), stable=True)


def scan_camt053_chunks(chunks: Iterable[bytes | bytearray | memoryview]) -> ParsedStatementFile | None:
    """Same as scan_camt053 for a document given in pieces. Reads `chunks` once, possibly not to the end."""
    return _scan(chunks, stable=False)


def _scan(chunks: Iterable[bytes | bytearray | memoryview], stable: bool) -> ParsedStatementFile | None:
    try:
        return _FastParse(stable).run(chunks)
    except _Decline as decline:
        log.debug("camt.053 fast path declined: %s", decline)
    except _Stop as stop:  # the conforming parser's own problem, e.g. from the prolog guard
        log.debug("camt.053 fast path declined: %s", stop.problem.message)
    except Exception:  # a fast-path bug must never change an answer: the conforming parser decides
        log.warning("camt.053 fast path failed; using the conforming parser", exc_info=True)
    return None


def fast_path_decline_reason(data: bytes | bytearray | memoryview) -> str | None:
    """Why the fast path declines `data` (None when it takes it). For tests and diagnostics."""
    try:
        _FastParse(stable=True).run(_pieces(data))
    except _Decline as decline:
        return str(decline)
    except _Stop as stop:
        return stop.problem.message
    except Exception as exc:
        return f"fast path failed: {type(exc).__name__}: {exc}"
    return None


def _pieces(data: bytes | bytearray | memoryview) -> Iterator[memoryview]:
    view = memoryview(data)
    return (view[offset : offset + _INPUT_PIECE_BYTES] for offset in range(0, len(view), _INPUT_PIECE_BYTES))


# ------------------------------------------------------------------------------------------------------ the driver


class _FastParse:
    def __init__(self, stable: bool) -> None:
        self._token = secrets.token_hex(8)
        self._shapes = _ShapeBook()
        self._header = _HeaderParser()
        self._batch: list[bytes | _Run] = []  # scanner output held back until its runs are extracted
        self._batch_bytes = 0
        self._batches: list[_Batch] = []
        self._runs = 0
        self._validator = _Validator(threaded=_VALIDATE_IN_THREAD, copy=not stable)  # last: starts a thread

    def run(self, chunks: Iterable[bytes | bytearray | memoryview]) -> ParsedStatementFile:
        header = self._header
        try:
            header.run(self._header_stream(chunks))
        finally:
            self._validator.stop()
        if header.problems:
            raise _Decline(f"the document has problems: {[problem.code for problem in header.problems]}")
        if header.pending or header.runs_placed != self._runs:
            raise _Decline("a run of entries did not arrive as an <Ntry> of a statement")
        frames = [batch.placed_lines() for batch in self._batches if batch.lines.height]
        lines = pl.concat(frames, how="vertical", rechunk=False) if frames else empty_lines()
        return ParsedStatementFile(
            format=FORMAT, pages=header.pages, lines=lines, problems=[], encoding=header.encoding
        )

    # ---- the byte stream: guard, validation, scanner, batches

    def _header_stream(self, chunks: Iterable[bytes | bytearray | memoryview]) -> Iterator[bytes]:
        guard = _PrologGuard()
        scanner = _Scanner()
        pending: list[bytes | bytearray | memoryview] = []  # bytes the guard has not cleared yet
        for chunk in chunks:
            if not guard.done:
                guard.feed(chunk)  # raises _Stop on DOCTYPE/ENTITY or a broken prolog
                pending.append(chunk)
                if not guard.done:
                    continue
                _check_encoding(guard.encoding, b"".join(bytes(piece) for piece in pending)[:4])
                cleared, pending = pending, []
            else:
                cleared = [chunk]
            for piece in cleared:
                self._validator.feed(piece)
                yield from self._batched(scanner.feed(piece))
        if not guard.done:
            raise _Decline("no root element")
        self._validator.close()
        yield from self._batched(scanner.close())
        yield from self._flush()

    def _batched(self, items: Iterator[bytes | _Run]) -> Iterator[bytes]:
        """Header bytes pass through, except behind a run not yet extracted; runs are extracted in batches."""
        for item in items:
            if not self._batch and isinstance(item, bytes):
                yield item
                continue
            size = len(item.text) if isinstance(item, _Run) else len(item)
            if self._batch_bytes + size > _WINDOW_BYTES:  # a batch stays within about one window
                yield from self._flush()
            if not self._batch and isinstance(item, bytes):
                yield item
                continue
            self._batch.append(item)
            self._batch_bytes += size
            if self._batch_bytes >= _WINDOW_BYTES:
                yield from self._flush()

    def _flush(self) -> Iterator[bytes]:
        items, self._batch, self._batch_bytes = self._batch, [], 0
        runs = [item.text for item in items if isinstance(item, _Run)]
        if not runs:
            yield from items  # type: ignore[misc]
            return
        batch = _Batch(*_extract_runs(runs, self._shapes))
        self._batches.append(batch)
        index = 0
        for item in items:
            if isinstance(item, bytes):
                yield item
                continue
            marker = f"{self._token}-{self._runs}"
            self._runs += 1
            self._header.pending.append((marker, batch, index))
            index += 1
            yield f'<Ntry {_MARKER_ATTRIBUTE}="{marker}"/>'.encode()


@dataclass
class _Run:
    """A run of entries (or a window of a long one): `<Ntry>...</Ntry>` blocks separated by XML whitespace."""

    text: str


@dataclass
class _Batch:
    """The lines of the runs extracted together; page and entry_sequence base of each run once it is placed."""

    lines: pl.DataFrame  # LINE_SCHEMA plus "run"; page 0, entry_sequence counted from 1 in each run
    booked: list[int]  # booked entries per run
    pages: list[int] = field(default_factory=list)
    bases: list[int] = field(default_factory=list)

    def placed_lines(self) -> pl.DataFrame:
        run = pl.col("run")
        return self.lines.with_columns(
            pl.lit(pl.Series(self.pages, dtype=pl.Int32)).gather(run).alias("page"),
            (pl.col("entry_sequence") + pl.lit(pl.Series(self.bases, dtype=pl.Int32)).gather(run)).cast(pl.Int32),
        ).select(list(LINE_SCHEMA))


class _Validator:
    """pyexpat with no callbacks over every byte of the document: decides well-formedness at C speed.

    Created as ElementTree's XMLParser creates its expat parser (no encoding override, namespace separator "}").
    pyexpat holds the GIL while it parses, Polars releases it; so with `threaded` the validation runs in a thread
    of its own, one slice at a time, overlapping with the extraction. `copy`: the pieces may be buffers the caller
    reuses after handing them over, so the thread gets a copy.
    """

    _END = object()

    def __init__(self, threaded: bool, copy: bool) -> None:
        self._parser = xml.parsers.expat.ParserCreate(None, "}")
        self._copy = copy
        self._error: str | None = None
        self._stopped = False
        self._thread: threading.Thread | None = None
        if threaded:
            self._queue: queue.Queue[object] = queue.Queue(maxsize=_VALIDATOR_QUEUE_SLICES)
            self._thread = threading.Thread(target=self._work, name="camt053-validate", daemon=True)
            self._thread.start()

    def feed(self, piece: bytes | bytearray | memoryview) -> None:
        if self._error is not None:
            raise _Decline(self._error)
        if self._thread is None:
            self._parse(piece, final=False)
            return
        if self._copy and type(piece) is not bytes:
            piece = bytes(piece)
        view = memoryview(piece)
        for offset in range(0, len(view), _VALIDATOR_SLICE_BYTES):
            self._queue.put(view[offset : offset + _VALIDATOR_SLICE_BYTES])

    def close(self) -> None:
        """Wait for the verdict on the whole document."""
        if self._thread is None:
            self._parse(b"", final=True)
        else:
            self._queue.put(self._END)
            self._thread.join()
            self._thread = None
        if self._error is not None:
            raise _Decline(self._error)

    def stop(self) -> None:
        """End the thread (after a decline: nothing more will come)."""
        if self._thread is not None:
            self._stopped = True
            self._queue.put(self._END)
            self._thread.join()
            self._thread = None

    def _work(self) -> None:
        while (piece := self._queue.get()) is not self._END:
            if self._error is None and not self._stopped:
                self._parse(piece, final=False)  # type: ignore[arg-type]
        if self._error is None and not self._stopped:
            self._parse(b"", final=True)

    def _parse(self, piece: bytes | bytearray | memoryview, final: bool) -> None:
        try:
            self._parser.Parse(piece, final)
        except xml.parsers.expat.ExpatError as error:
            self._error = f"not well-formed XML: {error}"
        except Exception as error:  # noqa: BLE001 - reported as a decline: the conforming parser decides
            self._error = f"validation failed: {type(error).__name__}: {error}"
        if self._error is not None and self._thread is None:
            raise _Decline(self._error)


def _check_encoding(declared: str | None, head: bytes) -> None:
    if head.startswith((b"\xff\xfe", b"\xfe\xff", b"<\x00", b"\x00<")):
        raise _Decline("UTF-16 document")
    if declared is not None and declared.lower() != "utf-8":
        raise _Decline(f"declared encoding {declared!r} is not UTF-8")


class _HeaderParser(_Camt053Parser):
    """The conforming parser, fed everything but the entry runs; each run's placeholder places its lines."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: deque[tuple[str, _Batch, int]] = deque()
        self.runs_placed = 0

    def _on_entry(self, entry_element: Element) -> None:
        marker = entry_element.get(_MARKER_ATTRIBUTE)
        if not self.pending or marker != self.pending[0][0] or len(entry_element):
            raise _Decline("an <Ntry> the scanner did not take (prefixed, with attributes, or out of place)")
        statement = self._statement
        if statement is None:
            raise _Decline("entries outside a <Stmt>")
        _, batch, index = self.pending.popleft()
        if index != len(batch.pages):  # cannot happen: markers are checked in order
            raise _Decline("runs placed out of order")
        self.runs_placed += 1
        batch.pages.append(len(self.pages))
        batch.bases.append(self._entry_count)
        self._entry_count += batch.booked[index]
        _detach(statement, entry_element)


# ----------------------------------------------------------------------------------------------------- the scanner


class _Scanner:
    """Splits the byte stream into header bytes and runs of entries (at most about _WINDOW_BYTES each)."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._in_run = False
        self._continuing = False  # in a run, a window was cut and the next <Ntry> is not confirmed yet
        self._search_from = 0

    def feed(self, chunk: bytes | bytearray | memoryview) -> Iterator[bytes | _Run]:
        self._buffer += chunk
        return self._drain(final=False)

    def close(self) -> Iterator[bytes | _Run]:
        return self._drain(final=True)

    def _drain(self, final: bool) -> Iterator[bytes | _Run]:
        buffer = self._buffer
        while True:
            if not self._in_run:
                start = buffer.find(_NTRY_OPEN)
                if start < 0:
                    cut = len(buffer) - (0 if final else len(_NTRY_OPEN) - 1)
                    if cut > 0:
                        yield bytes(buffer[:cut])
                        del buffer[:cut]
                    return
                if start:
                    yield bytes(buffer[:start])
                    del buffer[:start]
                self._in_run, self._continuing, self._search_from = True, False, 0
            end = self._run_end(final)
            if end is not None:
                if end:
                    yield self._cut(end)
                self._in_run = False
                continue
            if final:
                raise _Decline("the document ends inside an entry")
            if len(buffer) < _WINDOW_BYTES:
                return
            last = buffer.rfind(_NTRY_CLOSE)
            if last < 0:  # one entry larger than a window: keep reading
                return
            yield self._cut(last + len(_NTRY_CLOSE))
            self._continuing, self._search_from = True, 0

    def _run_end(self, final: bool) -> int | None:
        """Where the current run ends in the buffer (0: it ended with the previous window), None: not known yet."""
        buffer = self._buffer
        if self._continuing:
            index = _SPACE_RE.match(buffer).end()  # type: ignore[union-attr]
            head = bytes(buffer[index : index + len(_NTRY_OPEN)])
            if head != _NTRY_OPEN:
                if not final and len(head) < len(_NTRY_OPEN) and _NTRY_OPEN.startswith(head):
                    return None
                return 0
            self._continuing = False
        match = _RUN_END_RE.search(buffer, self._search_from)
        if match is None:
            self._search_from = max(self._search_from, len(buffer) - len(_NTRY_CLOSE))
            return None
        after = bytes(buffer[match.end() : match.end() + len(_NTRY_OPEN)])
        if not final and len(after) < len(_NTRY_OPEN) and _NTRY_OPEN.startswith(after):
            self._search_from = match.start()  # cannot tell yet whether another <Ntry> follows
            return None
        return match.start() + len(_NTRY_CLOSE)

    def _cut(self, end: int) -> _Run:
        with memoryview(self._buffer) as view:
            try:
                text = str(view[:end], "utf-8")  # one copy, straight from the buffer
            except UnicodeDecodeError as error:
                raise _Decline(f"not UTF-8: {error}") from None
        del self._buffer[:end]
        return _Run(text)


# -------------------------------------------------------------------------------------------------------- shapes


@dataclass
class _Node:
    name: str
    attributes: dict[str, str]
    slot: tuple[int, int] | None  # (index of the "<"-separated part, length of the tag before the text)
    children: list[_Node] = field(default_factory=list)

    def first(self, name: str) -> _Node | None:
        return next((child for child in self.children if child.name == name), None)


def _slot(node: _Node | None) -> tuple[int, int] | None:
    return None if node is None else node.slot


@dataclass
class _Shape:
    """Where each field of an entry of this shape is, following the conforming parser's rules."""

    slots: dict[str, tuple[int, int] | None]
    remittance: list[tuple[int, int]]
    currency: str | None
    booking_date_present: bool
    value_date_present: bool
    transaction_count: int

    @property
    def is_batch(self) -> bool:
        return self.transaction_count > 1


def _parse_skeleton(skeleton: str) -> _Node:
    """The element tree of an entry skeleton ("<Ntry><Amt Ccy=\"EUR\"></Amt>..." without the closing </Ntry>)."""
    end = len(skeleton.rstrip(_XML_SPACE))
    position = len(skeleton) - len(skeleton.lstrip(_XML_SPACE))
    if not skeleton.startswith("<Ntry>", position):
        raise _Decline(f"an entry block does not start with <Ntry>: {skeleton[:80]!r}")
    root: _Node | None = None
    stack: list[_Node] = []
    part = 0
    while position < end:
        match = _TAG_RE.match(skeleton, position)
        if match is None or match.end() > end:
            raise _Decline(f"markup outside the plain shape in an entry: {skeleton[position : position + 80]!r}")
        part += 1
        position = match.end()
        name = match["name"]
        if match["end"]:
            if match["attributes"] or match["empty"] or not stack or stack[-1].name != name or len(stack) == 1:
                raise _Decline(f"unexpected end tag </{name}> in an entry")
            stack.pop()
            continue
        attributes = dict(_ATTRIBUTE_RE.findall(match["attributes"]))
        if any(key.startswith("xmlns") for key in attributes):
            raise _Decline("namespace declaration inside an entry")
        if root is not None and name in _STRUCTURAL_NAMES:
            raise _Decline(f"<{name}> inside an entry")
        node = _Node(name, attributes, None if match["empty"] else (part, len(match[0]) - 1))
        if root is None:
            root = node
        else:
            stack[-1].children.append(node)
        if not match["empty"]:
            stack.append(node)
    if root is None or len(stack) != 1:
        raise _Decline("unbalanced tags in an entry")
    return root


def _analyse(skeleton: str) -> _Shape:
    """The conforming parser's _status/_read_entry/_read_details/_entry_from, resolved to slots for one shape."""
    entry = _parse_skeleton(skeleton)
    for name in _SINGLE_CHILDREN:
        if sum(child.name == name for child in entry.children) > 1:
            raise _Decline(f"repeated <{name}> in an entry")
    slots: dict[str, tuple[int, int] | None] = dict.fromkeys(_SLOT_FIELDS)
    status = entry.first("Sts")
    if status is not None:
        slots["sts_text"] = status.slot
        slots["sts_cd"] = _slot(status.first("Cd"))
        slots["sts_prtry"] = _slot(status.first("Prtry"))
    amount = entry.first("Amt")
    slots["amount"] = _slot(amount)
    currency = amount.attributes.get("Ccy") if amount is not None else None
    slots["indicator"] = _slot(entry.first("CdtDbtInd"))
    slots["reversal"] = _slot(entry.first("RvslInd"))
    dates = {}
    for key, name in (("booking_date", "BookgDt"), ("value_date", "ValDt")):
        choice = entry.first(name)
        dates[key] = choice is not None and bool(choice.children)
        slots[key] = choice.children[0].slot if dates[key] else None  # Dt or DtTm: the first child, as written
    slots["bank_ref"] = _slot(entry.first("AcctSvcrRef"))
    code = entry.first("BkTxCd")
    if code is not None:
        domain = code.first("Domn")  # without it the three parts stay null: joined "" -> Prtry/Cd
        if domain is not None:
            slots["domain_cd"] = _slot(domain.first("Cd"))
            family = domain.first("Fmly")
            if family is not None:
                slots["family_cd"] = _slot(family.first("Cd"))
                slots["sub_family_cd"] = _slot(family.first("SubFmlyCd"))
        proprietary = code.first("Prtry")
        slots["proprietary_cd"] = _slot(proprietary.first("Cd")) if proprietary is not None else None
    slots["additional"] = _slot(entry.first("AddtlNtryInf"))
    transaction_count = 0
    batch_seen = return_seen = False
    remittance: list[tuple[int, int]] = []
    for details in (child for child in entry.children if child.name == "NtryDtls"):
        for child in details.children:
            if child.name == "TxDtls":
                transaction_count += 1
                if transaction_count == 1:
                    references = child.first("Refs")
                    if references is not None:
                        slots["end_to_end"] = _slot(references.first("EndToEndId"))
                        slots["tx_payment_id"] = _slot(references.first("PmtInfId"))
                if not return_seen:
                    return_information = child.first("RtrInf")
                    if return_information is not None:
                        return_seen = True
                        reason = return_information.first("Rsn")
                        if reason is not None:
                            slots["return_cd"] = _slot(reason.first("Cd"))
                            slots["return_proprietary"] = _slot(reason.first("Prtry"))
                information = child.first("RmtInf")
                if information is not None:
                    remittance += [node.slot for node in information.children if node.name == "Ustrd" and node.slot]
            elif child.name == "Btch" and not batch_seen:
                batch_seen = True
                slots["batch_payment_id"] = _slot(child.first("PmtInfId"))
                slots["batch_count_text"] = _slot(child.first("NbOfTxs"))
    return _Shape(
        slots=slots,
        remittance=[] if transaction_count > 1 else remittance,  # a batch's line does not take payment texts
        currency=currency,
        booking_date_present=dates["booking_date"],
        value_date_present=dates["value_date"],
        transaction_count=transaction_count,
    )


class _ShapeBook:
    """The shapes met so far in a document, and a table with one row per shape for gathering per-row positions."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self._shapes: list[_Shape] = []
        self._table: pl.DataFrame | None = None
        self._plans: dict[tuple[tuple[str, ...], int, bool, bool], _Plan] = {}

    def add(self, skeleton: str) -> None:
        self._shapes.append(_analyse(skeleton))
        self.ids[skeleton] = len(self._shapes) - 1
        self._table = None

    def plan(self, has_cr: bool, has_amp: bool) -> _Plan:
        present = tuple(name for name in _SLOT_FIELDS if any(shape.slots[name] for shape in self._shapes))
        key = (present, self.remittance_width, has_cr, has_amp)
        if key not in self._plans:
            self._plans[key] = _plan(*key)
        return self._plans[key]

    @property
    def remittance_width(self) -> int:
        return max((len(shape.remittance) for shape in self._shapes), default=0)

    def table(self) -> pl.DataFrame:
        if self._table is None:
            shapes = self._shapes
            columns: dict[str, pl.Series] = {}
            fields = [(name, [shape.slots[name] for shape in shapes]) for name in _SLOT_FIELDS]
            fields += [
                (f"{_REMITTANCE}{index}", [_nth(shape.remittance, index) for shape in shapes])
                for index in range(self.remittance_width)
            ]
            for name, slots in fields:
                columns[f"{_SENTINEL_PREFIX}j_{name}"] = pl.Series([s and s[0] for s in slots], dtype=pl.Int32)
                columns[f"{_SENTINEL_PREFIX}o_{name}"] = pl.Series([s and s[1] for s in slots], dtype=pl.Int32)
            columns["currency"] = pl.Series([shape.currency for shape in shapes], dtype=pl.String)
            columns["booking_date_present"] = pl.Series([s.booking_date_present for s in shapes], dtype=pl.Boolean)
            columns["value_date_present"] = pl.Series([s.value_date_present for s in shapes], dtype=pl.Boolean)
            columns["is_batch"] = pl.Series([shape.is_batch for shape in shapes], dtype=pl.Boolean)
            columns["transaction_count"] = pl.Series([s.transaction_count for s in shapes], dtype=pl.Int64)
            self._table = pl.DataFrame(columns)
        return self._table


def _nth(slots: list[tuple[int, int]], index: int) -> tuple[int, int] | None:
    return slots[index] if index < len(slots) else None


# ---------------------------------------------------------------------------------------------------- extraction


def _extract_runs(runs: list[str], shapes: _ShapeBook) -> tuple[pl.DataFrame, list[int]]:
    """The lines of the booked entries of `runs` (LINE_SCHEMA plus "run", the index in `runs`; page 0 and
    entry_sequence counted from 1 in each run), and the number of booked entries of each run.

    A run goes from an <Ntry> to the </Ntry> of its last entry, with only XML whitespace between entries.
    """
    blocks: list[str] = []
    run_of_block: list[int] = []
    for index, text in enumerate(runs):
        pieces = text.split("</Ntry>")
        if pieces.pop():
            raise _Decline("a run does not end with </Ntry>")
        blocks += pieces
        run_of_block += [index] * len(pieces)
    entries = pl.Series("entry", blocks, dtype=pl.String)
    skeletons = entries.str.replace_all(r">[^<]+<", "><")
    for skeleton in skeletons.unique().to_list():
        if skeleton not in shapes.ids:
            shapes.add(skeleton)
    shape_ids = skeletons.replace_strict(shapes.ids, return_dtype=pl.Int32)
    plan = shapes.plan(has_cr=any("\r" in text for text in runs), has_amp=any("&" in text for text in runs))
    # Eager on purpose: in a lazy query the split may be inlined into each of its ~20 consumers.
    frame = shapes.table().select(
        pl.all().gather(shape_ids),
        pl.lit(entries).str.split("<").alias("parts"),
        pl.lit(pl.Series(run_of_block, dtype=pl.Int32)).alias("run"),
    )
    frame = frame.select(plan.raw).with_columns(plan.clean).with_columns(plan.null_if_empty)
    if plan.character_reference is not None and frame[plan.character_reference].any():
        raise _Decline("character reference in an entry")
    booked_rows = frame.lazy().filter(plan.booked)  # PDNG/INFO/FUTR: neither a line nor counted
    checks, lines = pl.collect_all([booked_rows.select(plan.checks), booked_rows.select(plan.lines)])
    failed = [name for name, ok in checks.row(0, named=True).items() if not ok]
    if failed:  # the conforming parser reports INVALID_ENTRY: its problem to report
        raise _Decline(f"invalid entry values ({', '.join(failed)}) in a booked entry")
    booked = [0] * len(runs)
    for index, count in lines.group_by("run").len().iter_rows():
        booked[index] = count
    return lines, booked


@dataclass
class _Plan:
    """The Polars expressions for one kind of window; built once per document and kind, not per window."""

    raw: list[pl.Expr]
    clean: list[pl.Expr]
    null_if_empty: list[pl.Expr]
    character_reference: str | None
    booked: pl.Expr
    checks: list[pl.Expr]
    lines: list[pl.Expr]


def _plan(present: tuple[str, ...], remittance_width: int, has_cr: bool, has_amp: bool) -> _Plan:
    """`present`: the slot fields some known shape has; the others are null columns."""
    remittance = [f"{_REMITTANCE}{index}" for index in range(remittance_width)]
    texts = [*present, *remittance]
    shape_columns = ["currency", "booking_date_present", "value_date_present", "is_batch", "transaction_count"]
    raw = [*map(pl.col, [*shape_columns, "run"]), *(_slot_text(name).alias(name) for name in texts)]
    raw += [pl.lit(None, dtype=pl.String).alias(name) for name in _SLOT_FIELDS if name not in present]
    clean = [_clean(pl.col(name), has_cr, has_amp).alias(name) for name in texts]
    character_reference = None
    if has_amp:  # on the raw texts: evaluated in the same with_columns as the cleaning
        character_reference = "_character_reference"
        clean.append(pl.any_horizontal(pl.col(texts).str.contains("&#", literal=True)).alias(character_reference))
    status = pl.coalesce("sts_text", "sts_cd", "sts_prtry")

    def date_ok(name: str) -> pl.Expr:
        text = pl.col(name)
        valid = text.str.contains(_DATE_PATTERN) & (text.str.slice(0, 4) != "0000") & _date(text).is_not_null()
        return (~pl.col(f"{name}_present") | valid.fill_null(False)).all()

    checks = [
        pl.col("amount").str.contains(_AMOUNT_PATTERN).fill_null(False).all().alias("amount"),
        pl.col("indicator").is_in(["CRDT", "DBIT"]).fill_null(False).all().alias("CdtDbtInd"),
        date_ok("booking_date").alias("BookgDt"),
        date_ok("value_date").alias("ValDt"),
        (pl.col("batch_count_text").is_null() | pl.col("batch_count_text").str.contains(_COUNT_PATTERN))
        .all()
        .alias("NbOfTxs"),
    ]
    # Non-strict casts: lines and checks are computed together, and a value the checks refuse declines anyway.
    amount = pl.col("amount").cast(AMOUNT_DTYPE, strict=False)
    reversal = pl.col("reversal").is_in(["true", "1"]).fill_null(False)
    mark = (
        pl.when(pl.col("indicator") == "CRDT")
        .then(pl.when(reversal).then(pl.lit("RD")).otherwise(pl.lit("C")))
        .otherwise(pl.when(reversal).then(pl.lit("RC")).otherwise(pl.lit("D")))
    )
    # Domn/Cd, Fmly/Cd, SubFmlyCd: all null without a Domn, so "" then means "take Prtry/Cd".
    joined_code = pl.concat_str(["domain_cd", "family_cd", "sub_family_cd"], separator="/", ignore_nulls=True)
    information = pl.concat_str([*remittance, "additional"], separator="\n", ignore_nulls=True)
    end_to_end = pl.col("end_to_end")
    lines = {
        "page": pl.lit(0, dtype=pl.Int32),
        "entry_sequence": pl.int_range(1, pl.len() + 1, dtype=pl.Int32).over("run"),
        "value_date": pl.when(pl.col("value_date_present")).then(_date(pl.col("value_date"))),
        "entry_date": pl.when(pl.col("booking_date_present")).then(_date(pl.col("booking_date"))),
        "mark": mark,
        "funds_code": pl.lit(None, dtype=pl.String),
        "amount": amount,
        "signed_amount": pl.when(mark.is_in(CREDIT_MARKS)).then(amount).otherwise(-amount),
        "currency": pl.col("currency"),
        "transaction_type": pl.when(joined_code != "").then(joined_code).otherwise(pl.col("proprietary_cd")),
        "customer_reference": end_to_end,
        "bank_reference": pl.col("bank_ref"),
        "supplementary_details": pl.lit(None, dtype=pl.String),
        "information": pl.when(information != "").then(information),
        "end_to_end_reference": pl.when(pl.col("is_batch") | (end_to_end == "NOTPROVIDED"))
        .then(None)
        .otherwise(end_to_end),
        "return_reason": pl.coalesce("return_cd", "return_proprietary"),
        "batch_reference": pl.coalesce("batch_payment_id", pl.when(pl.col("is_batch")).then(pl.col("tx_payment_id"))),
        "batch_count": pl.when(pl.col("batch_count_text").is_not_null())
        .then(pl.col("batch_count_text").cast(pl.Int64, strict=False))
        .otherwise(pl.when(pl.col("is_batch")).then(pl.col("transaction_count"))),
    }  # fmt: skip
    assert list(lines) == list(LINE_SCHEMA)
    return _Plan(
        raw=raw,
        clean=clean,
        null_if_empty=[pl.when(pl.col(name).str.len_bytes() > 0).then(pl.col(name)).alias(name) for name in texts],
        character_reference=character_reference,
        booked=status.is_null() | (status == "BOOK"),
        checks=checks,
        lines=[*(expression.cast(LINE_SCHEMA[name]).alias(name) for name, expression in lines.items()), pl.col("run")],
    )


def _slot_text(name: str) -> pl.Expr:
    """The raw text of field `name` of every row: part j of the "<"-split block, after its tag."""
    return (
        pl.col("parts")
        .list.get(pl.col(f"{_SENTINEL_PREFIX}j_{name}"), null_on_oob=True)
        .str.slice(pl.col(f"{_SENTINEL_PREFIX}o_{name}"))
    )


def _clean(text: pl.Expr, has_cr: bool, has_amp: bool) -> pl.Expr:
    """What ElementTree and _text make of raw element text: line ends normalised, entities unescaped, stripped."""
    if has_cr:  # XML 1.0 section 2.11: CR LF and lone CR are read as LF
        text = text.str.replace_all("\r\n", "\n", literal=True).str.replace_all("\r", "\n", literal=True)
    if has_amp:  # only the predefined entities can occur (no DTD; character references declined); &amp; last
        for escaped, character in (("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&apos;", "'"), ("&amp;", "&")):
            text = text.str.replace_all(escaped, character, literal=True)
    # Same set as str.strip() on every character XML 1.0 can carry (they differ only on U+001C..U+001F).
    return text.str.strip_chars()


def _date(text: pl.Expr) -> pl.Expr:
    return text.str.slice(0, 10).str.to_date("%Y-%m-%d", strict=False, exact=True)
