"""Check a billing export row by row and turn it into staging rows, in a second process if big.

The import (`ivr.db.imports`) stages what this module yields. Two readers give the same
rows: `staged_rows`, the exact rules through `csv` and `parse_row` (which also words a
bad row's error), and `staged_batches`, which reads the file as bytes a block at a time
and checks the common canonical line with one regular expression, handing anything else
to the exact rules. `parsed` runs `staged_batches` in a child process for a big file, so
the checking (pure Python, ~2 s of CPU a million rows) runs beside the staging.

Longer than our modules usually are (~550 lines): the two readers must agree row for row,
and kept side by side the fast one can be read against the exact one it stands in for.
"""

from __future__ import annotations

import binascii
import csv
import hashlib
import io
import marshal
import multiprocessing
import operator
import pickle
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from ivr.contract import CONTRACT_LENGTH, is_valid, luhn_ascii, mask
from ivr.db.schema import KINDS, KOPECK, sqlite_text
from ivr.errors import ImportFileError

CSV_HEADER = ("contract", "posted_at", "amount", "kind", "memo")
KEY_BYTES = 16

_AMOUNT = re.compile(r"^[+-]?\d{1,10}(\.\d{1,2})?$")

# (rows, payload): a list of row tuples for SQLite's executemany, or the rows as
# PostgreSQL's COPY text for PostgreSQL.
Batch = tuple[int, Any]


def content_key(text: str) -> bytes:
    """Return an entry's key: the first 16 bytes of the SHA-256 of its content's text.

    The text is `contract|posted_at (UTC, isoformat)|amount|kind|memo`. Before revision
    0003 the key was the whole digest in hex; 0003 keeps the first 32 hex digits as
    bytes (`convert_key`), so an entry imported before the upgrade and the same row
    imported after it get one key. 128 bits: for 10^9 entries the chance that any two
    different rows share a key is about 10^18 / 2^129 ~ 1.5e-21.
    """
    return hashlib.sha256(text.encode()).digest()[:KEY_BYTES]


@dataclass(frozen=True)
class LedgerRow:
    """One validated CSV row."""

    contract: str
    posted_at: datetime
    amount: Decimal
    kind: str
    memo: str

    @property
    def key(self) -> bytes:
        """Identify the row by its content, so a re-import recognises it (see `content_key`)."""
        text = "|".join(
            (self.contract, self.posted_at.isoformat(), str(self.amount), self.kind, self.memo)
        )
        return content_key(text)


def parse_row(fields: dict[str, str | None]) -> LedgerRow:
    """Validate one CSV row; raise ValueError saying what is wrong with it."""
    contract = (fields.get("contract") or "").strip()
    if not is_valid(contract):
        raise ValueError(
            # Masked: the line number finds the row, and errors may end up in logs.
            f"contract {mask(contract)!r} is not {CONTRACT_LENGTH} digits with a valid check digit"
        )
    raw_time = (fields.get("posted_at") or "").strip()
    try:
        posted_at = datetime.fromisoformat(raw_time)
    except ValueError:
        raise ValueError(f"posted_at {raw_time!r} is not an ISO 8601 timestamp") from None
    if posted_at.tzinfo is None:
        raise ValueError(f"posted_at {raw_time!r} has no UTC offset (add +00:00 or Z)")
    raw_amount = (fields.get("amount") or "").strip()
    if not _AMOUNT.match(raw_amount):
        raise ValueError(f"amount {raw_amount!r} is not a signed decimal with at most 2 decimals")
    try:
        amount = Decimal(raw_amount).quantize(KOPECK)
    except InvalidOperation:
        raise ValueError(f"amount {raw_amount!r} is not a number") from None
    kind = (fields.get("kind") or "").strip()
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r} is not one of {', '.join(KINDS)}")
    memo = fields.get("memo") or ""
    return LedgerRow(contract, posted_at.astimezone(UTC), amount, kind, memo)


def read_csv(path: Path) -> Iterator[tuple[int, LedgerRow]]:
    """Yield (line number, row) for every data row; raise ImportFileError on the first bad one."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = tuple(reader.fieldnames or ())
        if header != CSV_HEADER:
            raise ImportFileError(_bad_header(path, header))
        for fields in reader:
            line = reader.line_num
            if None in fields or any(value is None for value in fields.values()):
                raise ImportFileError(_bad_count(path, line))
            try:
                yield line, parse_row(fields)
            except ValueError as exc:
                raise ImportFileError(f"{path}:{line}: {exc}") from None


def _bad_header(path: Path, header: Iterable[str]) -> str:
    return f"{path}:1: the header must be {','.join(CSV_HEADER)}, got {','.join(header)}"


def _bad_count(path: Path, line: int) -> str:
    return f"{path}:{line}: expected {len(CSV_HEADER)} fields, got another number"


# The exact rules ------------------------------------------------------------------------

# The common canonical row, its five fields joined by '|' (the text its key hashes):
# 12 digits, 'YYYY-MM-DDTHH:MM:SS.ffffff+00:00', '-123.45', a kind, then the memo. Each
# field is exact (none of the first four can hold '|'), so one match checks them all;
# the contract's check digit and the date's day of month are checked once per value.
_CANONICAL = re.compile(
    r"[0-9]{12}\|"
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]\.[0-9]{6}\+00:00\|"
    r"-?(?:0|[1-9][0-9]{0,9})\.[0-9]{2}\|"
    r"(?:payment|charge|adjustment|promised_payment)\|"
)


class _Progress:
    """Count the bytes a text file hands out, for the progress of the check."""

    def __init__(self, handle: Any, report: Callable[[int], None], done: int = 0) -> None:
        self._handle = handle
        self._report = report
        self._done = done
        self._next = 0

    def __iter__(self) -> Iterator[str]:
        for line in self._handle:
            self._done += len(line)
            if self._done >= self._next:
                self._report(self._done)
                self._next = self._done + (1 << 22)
            yield line


def staged_rows(
    path: Path, sqlite: bool, report_read: Callable[[int], None] | None = None
) -> Iterator[tuple[Any, ...]]:
    """Yield every row of a file validated and ready to stage; raise ImportFileError on a bad one.

    (n, contract, posted_at, amount, kind, memo, key): the time as SQLite stores it (naive
    UTC text) or ISO 8601 with its offset; the amount as integer kopecks (SQLite) or
    canonical text; the key as `content_key` bytes. The common, canonical row takes a fast
    path (one regular expression, no datetime or Decimal); anything else goes through
    `parse_row`, which also words the error. `report_read(characters)` now and then.
    """
    with path.open(newline="", encoding="utf-8-sig") as handle:
        lines: Any = handle if report_read is None else _Progress(handle, report_read)
        reader = csv.reader(lines)
        header = tuple(next(reader, ()))
        if header != CSV_HEADER:
            raise ImportFileError(_bad_header(path, header))
        yield from _rows_of(path, reader, sqlite, line=0, n=0)


def _rows_of(
    path: Path, reader: Any, sqlite: bool, line: int, n: int
) -> Iterator[tuple[Any, ...]]:
    """Yield the rows a csv reader reads; `line` lines and `n` rows came before its first."""
    good_contracts: set[str] = set()
    good_dates: set[str] = set()
    canonical = _CANONICAL.match
    sha256 = hashlib.sha256
    for fields in reader:
        if len(fields) != 5:
            raise ImportFileError(_bad_count(path, line + reader.line_num))
        joined = "|".join(fields)
        if (
            canonical(joined)
            and (joined[:12] in good_contracts or _learn_contract(joined, good_contracts))
            and (joined[13:23] in good_dates or _learn_date(joined, good_dates))
            and joined[33:39] != "000000"  # else the key's text has no fraction
        ):
            # The fields are exact, and `joined` already is the key's text.
            key = sha256(joined.encode()).digest()[:16]
            stamp, amount = fields[1], fields[2]
            if sqlite:
                stored = stamp[:10] + " " + stamp[11:26]
                kopecks = int(amount.replace(".", ""))
                yield n, fields[0], stored, kopecks, fields[3], fields[4], key
            else:
                yield n, fields[0], stamp, amount, fields[3], fields[4], key
            n += 1
            continue
        yield _exact_row(path, line + reader.line_num, n, fields, sqlite)
        n += 1


def _exact_row(path: Path, line: int, n: int, fields: list[str], sqlite: bool) -> tuple[Any, ...]:
    """Stage one row by the exact rules, or raise ImportFileError naming its line."""
    try:
        row = parse_row(dict(zip(CSV_HEADER, fields, strict=True)))
    except ValueError as exc:
        raise ImportFileError(f"{path}:{line}: {exc}") from None
    amount_text = str(row.amount)
    if sqlite:
        stored = sqlite_text(row.posted_at)
        kopecks = int(amount_text.replace(".", ""))
        return n, row.contract, stored, kopecks, row.kind, row.memo, row.key
    stamp = row.posted_at.isoformat(timespec="microseconds")
    return n, row.contract, stamp, amount_text, row.kind, row.memo, row.key


def _learn_contract(joined: str, good: set[str]) -> bool:
    contract = joined[:12]
    if is_valid(contract):
        good.add(contract)
        return True
    return False


def _learn_date(joined: str, good: set[str]) -> bool:
    day = joined[13:23]
    try:
        date.fromisoformat(day)
    except ValueError:
        return False
    good.add(day)
    return True


# The fast reader ------------------------------------------------------------------------

BLOCK_BYTES = 1 << 20  # read and staged at once (~12 000 rows)

# The canonical line as bytes: the fields as in `_CANONICAL`, separated by commas, and a
# memo with nothing that CSV quotes or COPY escapes. A block with no '"' and no lone '\r'
# holds one record a line, so splitting at '\n' and ',' is what `csv` would do.
_LINE = (
    rb"[0-9]{12},"
    rb"[0-9]{4}-[0-9]{2}-[0-9]{2}T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]\.[0-9]{6}\+00:00,"
    rb"-?(?:0|[1-9][0-9]{0,9})\.[0-9]{2},"
    rb"(?:payment|charge|adjustment|promised_payment),"
    rb"[^,\\\t\x00\n]*"
)
_CANONICAL_LINE = re.compile(_LINE)
_CANONICAL_BLOCK = re.compile(rb"(?:" + _LINE + rb"\n)+")
_CONTRACT_OF = operator.itemgetter(slice(0, 12))
_DAY_OF = operator.itemgetter(slice(13, 23))
_BOM = b"\xef\xbb\xbf"
_PLAIN_HEADER = ",".join(CSV_HEADER).encode()


def staged_batches(
    path: Path, sqlite: bool, report_read: Callable[[int], None] | None = None
) -> Iterator[Batch]:
    """Yield the rows of a file checked as `staged_rows` checks them, in batches to stage.

    A batch is (rows, payload), its rows numbered on from 1 in file order; each row is
    (contract, posted_at as ISO 8601 UTC with microseconds, amount as canonical text,
    kind, memo, key). SQLite's payload is (the block's text or its fields, five a row;
    the keys, 16 bytes each, joined): see `sqlite_rows`. PostgreSQL's is COPY text, the
    row then its number n. A block of plain lines is checked whole by one regular
    expression; one that is not goes line by line, and from the first block that is not
    plain at all (a quote, a lone carriage return, bytes that are not UTF-8) on, the
    rest of the file goes through `csv` as `staged_rows` reads it. `report_read(bytes)`
    after each block.
    """
    with path.open("rb") as handle:
        first = handle.readline()
        if first.removeprefix(_BOM).rstrip(b"\r\n") != _PLAIN_HEADER or first.endswith(b"\r"):
            yield from _batched(_rows_of_file(path, report_read), sqlite)
            if report_read is not None:
                report_read(path.stat().st_size)
            return
        offset, line, n = len(first), 1, 0
        good = _Known()
        carry = b""
        while True:
            block = handle.read(BLOCK_BYTES)
            data = carry + block
            cut = data.rfind(b"\n") + 1 if block else len(data)
            chunk, carry = data[:cut], data[cut:]
            if not chunk:
                if not block:
                    return
                continue
            plain = _plain(chunk)
            if plain is None:
                break
            lines = plain.split(b"\n")
            lines.pop()
            staged = _canonical_block(plain, lines, n, sqlite, good)
            if staged is None:
                staged = _stage_lines(path, lines, line, n, sqlite, good)
            yield len(lines), staged
            line += len(lines)
            n += len(lines)
            offset += len(chunk)
            if report_read is not None:
                report_read(offset)
    # Not plain: the exact reader from the start of this block to the end of the file.
    with path.open("rb") as raw:
        raw.seek(offset)
        rest = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        lines_in: Any = rest if report_read is None else _Progress(rest, report_read, offset)
        yield from _batched(_rows_of(path, csv.reader(lines_in), False, line, n), sqlite)
        if report_read is not None:
            report_read(raw.tell())  # all of it (the reader above counts characters)


def _rows_of_file(path: Path, report_read: Callable[[int], None] | None) -> Iterator[Any]:
    return staged_rows(path, sqlite=False, report_read=report_read)


def _plain(chunk: bytes) -> bytes | None:
    """Return a block's lines ending in '\n', or None when `csv` must read it."""
    if b'"' in chunk:
        return None
    if b"\r" in chunk:
        if chunk.count(b"\r") != chunk.count(b"\r\n"):
            return None
        chunk = chunk.replace(b"\r\n", b"\n")
    try:
        chunk.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return chunk if chunk.endswith(b"\n") else chunk + b"\n"


class _Known:
    """The contracts and days already found good: each is checked once."""

    def __init__(self) -> None:
        self.contracts: set[bytes] = set()
        self.days: set[bytes] = set()

    def contract(self, contract: bytes) -> bool:
        if contract in self.contracts:
            return True
        if luhn_ascii(contract):  # 12 digits: the caller matched them
            self.contracts.add(contract)
            return True
        return False

    def day(self, day: bytes) -> bool:
        if day in self.days:
            return True
        try:
            date.fromisoformat(day.decode())
        except ValueError:
            return False
        self.days.add(day)
        return True


def _canonical_block(
    block: bytes, lines: list[bytes], n: int, sqlite: bool, good: _Known
) -> Any:
    """Stage a block whose every line is canonical at once; None if one is not."""
    if not _CANONICAL_BLOCK.fullmatch(block) or b".000000+00:00," in block:
        return None  # a line to check alone (or a whole second: its key text has no fraction)
    contracts = set(map(_CONTRACT_OF, lines)) - good.contracts
    days = set(map(_DAY_OF, lines)) - good.days
    if not all(map(good.contract, contracts)) or not all(map(good.day, days)):
        return None
    sha256 = hashlib.sha256
    # With '|' for ',' a line is its key's text.
    keys = [sha256(text).digest()[:16] for text in block.replace(b",", b"|").split(b"\n")]
    keys.pop()
    if sqlite:
        return block[:-1].decode(), b"".join(keys)
    hexlify = binascii.hexlify
    columns = block.replace(b",", b"\t").split(b"\n")
    columns.pop()
    hex_keys = [b"\\\\x" + hexlify(key) for key in keys]
    numbers = [b"%d" % number for number in range(n + 1, n + 1 + len(lines))]
    return b"\n".join(map(b"\t".join, zip(columns, hex_keys, numbers, strict=True))) + b"\n"


def _stage_lines(
    path: Path, lines: list[bytes], line: int, n: int, sqlite: bool, good: _Known
) -> Any:
    """Stage plain lines one by one (after `line` lines and `n` rows); raise on a bad one."""
    canonical = _CANONICAL_LINE.fullmatch
    sha256 = hashlib.sha256
    rows: list[tuple[Any, ...]] = []
    for raw in lines:
        line += 1
        n += 1
        if (
            canonical(raw)
            and good.contract(raw[:12])
            and good.day(raw[13:23])
            and raw[33:39] != b"000000"  # else the key's text has no fraction
        ):
            key = sha256(raw.replace(b",", b"|")).digest()[:16]
            rows.append((n, *raw.decode().split(","), key))
            continue
        fields = raw.decode().split(",")
        if len(fields) != 5:
            raise ImportFileError(_bad_count(path, line))
        rows.append(_exact_row(path, line, n, fields, sqlite=False))
    return _payload(rows, sqlite)


def _batched(rows: Iterator[tuple[Any, ...]], sqlite: bool) -> Iterator[Batch]:
    """Batch rows of `staged_rows` (PostgreSQL's form, numbered from 0), numbered from 1."""
    batch: list[tuple[Any, ...]] = []
    for row in rows:
        batch.append((row[0] + 1, *row[1:]))
        if len(batch) >= 10_000:
            yield len(batch), _payload(batch, sqlite)
            batch = []
    if batch:
        yield len(batch), _payload(batch, sqlite)


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _payload(rows: list[tuple[Any, ...]], sqlite: bool) -> Any:
    """Turn rows (n, contract, posted_at, amount, kind, memo, key) into a batch's payload."""
    if sqlite:
        fields = [field for row in rows for field in row[1:6]]
        return fields, b"".join(row[6] for row in rows)
    out = []
    for n, contract, stamp, amount, kind, memo, key in rows:
        memo_text = memo.translate(_COPY_ESCAPES)
        out.append(f"{contract}\t{stamp}\t{amount}\t{kind}\t{memo_text}\t\\\\x{key.hex()}\t{n}\n")
    return "".join(out).encode()


def sqlite_rows(payload: Any, group: int) -> tuple[list[list[Any]], list[list[Any]]]:
    """Return a SQLite payload's rows: parameters for `group` rows at once, and the rest.

    A group's parameters are its rows' fields (five a row), then their keys; the rest
    are one row's six values each.
    """
    text_or_fields, joined_keys = payload
    if isinstance(text_or_fields, str):
        fields = text_or_fields.replace("\n", ",").split(",")
    else:
        fields = text_or_fields
    keys = [joined_keys[i : i + KEY_BYTES] for i in range(0, len(joined_keys), KEY_BYTES)]
    count = len(keys)
    whole = count - count % group
    groups = [fields[5 * i : 5 * (i + group)] + keys[i : i + group] for i in range(0, whole, group)]
    rest = [[*fields[5 * i : 5 * i + 5], keys[i]] for i in range(whole, count)]
    return groups, rest


# The second process ---------------------------------------------------------------------

BACKGROUND_BYTES = 2 << 20  # a file this big is checked in a child process


@contextmanager
def parsed(
    path: Path, sqlite: bool, report_read: Callable[[int], None] | None = None
) -> Iterator[Iterator[Batch]]:
    """Give the batches of `staged_batches`, made in a child process when the file is big.

    The child checks the next blocks while this process stages the last ones; a pipe
    of a few blocks keeps it from running ahead. Its errors are raised here.
    """
    if path.stat().st_size < BACKGROUND_BYTES:
        yield staged_batches(path, sqlite, report_read)
        return
    # fork: the child starts at once, with this module loaded; it touches nothing it
    # inherits (no connection, no log) and leaves with os._exit.
    methods = multiprocessing.get_all_start_methods()
    context: Any = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(sender, path, sqlite), daemon=True)
    child.start()
    sender.close()
    try:
        yield _received(receiver, sqlite, report_read)
    finally:
        receiver.close()
        if child.is_alive():
            child.terminate()
        child.join()


def _child(sender: Any, path: Path, sqlite: bool) -> None:
    """Run `staged_batches` and send what it yields: tagged messages, one batch each."""

    def report_read(done: int) -> None:
        sender.send_bytes(b"P%d" % done)

    try:
        for rows, payload in staged_batches(path, sqlite, report_read):
            body = marshal.dumps(payload) if sqlite else payload
            sender.send_bytes(b"B%d:" % rows + body)
        sender.send_bytes(b"D")
    except BrokenPipeError:
        pass  # the parent stopped reading: it has failed or finished
    except Exception as exc:
        sender.send_bytes(b"E" + pickle.dumps(exc))
    finally:
        sender.close()


def _received(
    receiver: Any, sqlite: bool, report_read: Callable[[int], None] | None
) -> Iterator[Batch]:
    while True:
        message = receiver.recv_bytes()
        tag = message[:1]
        if tag == b"B":
            colon = message.index(b":")
            body = message[colon + 1 :]
            yield int(message[1:colon]), marshal.loads(body) if sqlite else body
        elif tag == b"P":
            if report_read is not None:
                report_read(int(message[1:]))
        elif tag == b"D":
            return
        else:
            raise pickle.loads(message[1:])
