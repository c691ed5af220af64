"""COPY ... FROM STDIN / TO STDOUT: the text, csv and binary data formats.

The engine parses the statement and its options (a `CopyCommand` from `Session.prepare`); the
wire moves the data: it decodes what the client sends into an Arrow table of the target
columns' types and hands it to `Session.copy_in`, and for COPY TO encodes the rows of
`Session.copy_query`. Decoding works on
whole columns, not values: text data is split into lines and fields with Arrow string kernels,
csv goes through Arrow's csv reader, and binary data is walked once to find each field's offset
(a NumPy reshape when every row has the same layout, as with numbers and fixed-size vectors).
Values that do not convert are located by row so the error names the line, as PostgreSQL does:

    ERROR:  invalid input syntax for type integer: "x"
    CONTEXT:  COPY t, line 3, column id: "x"

Formats (https://www.postgresql.org/docs/current/sql-copy.html#SQL-COPY-FILE-FORMATS):
- text: one line per row, fields separated by DELIMITER (tab), NULL as `\\N`, backslash
  escapes (`\\t`, `\\n`, `\\\\`, octal `\\123`, hex `\\x41`), optionally ended by `\\.`.
- csv: RFC 4180 with QUOTE (`"`), ESCAPE (the quote), DELIMITER (`,`), NULL (unquoted empty),
  HEADER.
- binary: signature `PGCOPY\\n\\377\\r\\n\\0`, int32 flags, int32 header-extension length and
  the extension; per row int16 field count then each field as int32 length (-1 NULL) and the
  value's binary format; an int16 -1 trailer.
"""

from __future__ import annotations

import io
import re
import struct
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from sqlvec.errors import BadCopyFileFormat, FeatureNotSupported, SqlVecError
from sqlvec.session import CopyOptions
from sqlvec.types import SqlType, decode_utf8
from wire import pgtypes
from wire.codec import concat_binary, fixed_width
from wire.pgtypes import CellError

BINARY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
BINARY_HEADER = BINARY_SIGNATURE + b"\x00\x00\x00\x00\x00\x00\x00\x00"
BINARY_TRAILER = b"\xff\xff"

# COPY FROM: data -> Arrow ----------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """A target column of COPY as the wire sees it: its name and type, which choose the text or
    binary decoder."""

    name: str
    type: SqlType


class CopyDataError(SqlVecError):
    """A COPY input error that knows its line (and column) for the CONTEXT field."""

    def __init__(self, error: SqlVecError, line: int, column: str | None = None,
                 value: str | None = None) -> None:
        super().__init__(error.message, sqlstate=error.sqlstate, detail=error.detail,
                         hint=error.hint)
        self.line = line
        self.column = column
        self.value = value
        self.label = "stdin"  # the table, set by whoever knows it

    def context(self, label: str) -> str:
        """The CONTEXT line PostgreSQL gives a COPY data error: `COPY t, line 3, column x:
        "value"`."""
        text = f"COPY {label}, line {self.line}"
        if self.column is not None:
            text += f", column {self.column}"
            if self.value is not None:
                shown = self.value if len(self.value) <= 30 else self.value[:30] + "..."
                text += f': "{shown}"'
        return text


def decode(data: bytes | bytearray | memoryview, options: CopyOptions,
           columns: list[Column]) -> pa.Table:
    """Decode a whole COPY FROM STDIN stream into an Arrow table of the columns' types."""
    if options.format == "binary":
        return decode_binary(data, columns)
    if options.format == "csv":
        return decode_csv(bytes(data), options, columns)
    fast = decode_text_fast(data, options, columns)
    return fast if fast is not None else decode_text(bytes(data), options, columns)


def _typed_table(fields: list[pa.Array], columns: list[Column], line_of,
                 shown_value=None) -> pa.Table:
    arrays = []
    for col, values in zip(columns, fields):
        try:
            arrays.append(pgtypes.decode_text_column(values, col.type))
        except CellError as exc:
            value = shown_value(values, exc.row) if shown_value else None
            raise CopyDataError(exc.error, line_of(exc.row), col.name, value) from None
    return pa.Table.from_arrays(arrays, names=[c.name for c in columns])


def _checked_text(data: bytes) -> str:
    """The stream as text, checked as PostgreSQL checks a client's data: 22021, with its line,
    for bytes that are not UTF-8 and for a NUL."""
    try:
        return decode_utf8(data)
    except SqlVecError as exc:
        try:
            data.decode()
            end = len(data)
        except UnicodeDecodeError as bad:
            end = bad.start
        nul = data.find(b"\0", 0, end)
        raise CopyDataError(exc, data[:end if nul < 0 else nul].count(b"\n") + 1) from None


_TEXT_BLOCK = 4 << 20


def decode_text_fast(data: bytes | bytearray | memoryview, options: CopyOptions,
                     columns: list[Column]) -> pa.Table | None:
    """The text format in one vectorised pass over the whole stream, for the data clients
    usually send: no backslash other than in NULL fields, no carriage return, no NUL, no empty
    line. Such a stream is exactly a CSV without quoting, so Arrow's CSV reader splits it;
    that every backslash belongs to a NULL field is checked by counting (a backslash escape,
    the `\\.` end marker or a stray backslash leaves more backslashes than NULLs). For anything
    else (a wrong field count, bad UTF-8, ...) it returns None and `decode_text` decodes the
    stream exactly, naming the bad line as PostgreSQL does. Value conversion is shared with
    `decode_text` (`_typed_table`): a value that does not convert fails with its line here
    too, since each line is one row."""
    ncols = len(columns)
    delimiter, null = options.delimiter, options.null
    if not ncols or not delimiter.isascii() or delimiter in "\\\r\n" or len(data) == 0:
        return None
    if isinstance(data, memoryview):
        data = data.obj if data.contiguous and data.nbytes == len(data.obj) else bytes(data)
    if b"\r" in data or b"\0" in data:
        return None
    body = memoryview(data)
    first = 1
    if options.header:
        end = data.find(b"\n")
        if end < 0:
            return None
        body, first = body[end + 1:], 2
        if not body:
            return None
    backslashes = data.count(b"\\", len(data) - len(body))
    null_backslashes = null.count("\\")  # NULL as PostgreSQL's default `\N`, or none at all
    if null_backslashes > 1 or null_backslashes == 1 and null != "\\N" \
            or backslashes and not null_backslashes:
        return None
    names = [f"c{i}" for i in range(ncols)]
    try:
        table = pacsv.read_csv(
            pa.BufferReader(pa.py_buffer(body)),
            read_options=pacsv.ReadOptions(column_names=names, block_size=_TEXT_BLOCK),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, quote_char=False,
                                              escape_char=False, newlines_in_values=False,
                                              ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()), null_values=[null],
                strings_can_be_null=True, quoted_strings_can_be_null=False))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None  # a wrong field count, bad UTF-8, ...: the exact path names the line
    if table.num_rows == 0:
        return None
    if null_backslashes and sum(c.null_count for c in table.columns) != backslashes:
        return None  # an escape somewhere
    if _text_bytes(table, len(null.encode())) != len(body) + (body[-1] != 0x0A):
        # An empty line among several columns ("missing data"), which the reader takes for
        # empty fields, or a byte order mark, which it skips: PostgreSQL reads both as data.
        return None
    return _typed_table(table.columns, columns, lambda row: row + first, _shown)


class _Pieces(ABC):
    """A stream decoded while it arrives: `feed` hands pieces of whole lines or rows to worker
    threads (Arrow's kernels release the GIL), `finish` returns the whole stream's table, or
    None when any piece was not plain data or failed: the caller then decodes the whole stream
    as usual, which gives PostgreSQL's error and line exactly. Nothing reaches the engine
    before the COPY ends, so a COPY that fails or is abandoned loads no row."""

    PIECE = 8 << 20

    def __init__(self, columns: list[Column], threads: int) -> None:
        self.columns = columns
        self.sent = 0  # the end of the bytes handed out so far, always whole lines or rows
        self.pieces: list = []
        self.usable = bool(columns)
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="copy-decode")

    @abstractmethod
    def _rest(self, rest: bytes) -> pa.Table | None:
        """The table of what came after the last piece (never empty)."""

    def finish(self, data: bytearray | memoryview) -> pa.Table | None:
        """The decoded stream (the pieces, then the rest of `data`), or None."""
        try:
            if not self.usable or not self.pieces:
                return None
            tables = [future.result() for future in self.pieces]
            if len(data) > self.sent:
                with memoryview(data) as view:
                    tables.append(self._rest(view[self.sent:].tobytes()))
            if any(table is None for table in tables):
                return None
            return pa.concat_tables(tables).combine_chunks()  # storage wants one chunk
        except (SqlVecError, pa.ArrowException):  # the whole stream decoder reports it
            return None
        finally:
            self.close()

    def close(self) -> None:
        """Drop whatever is still queued (a failed or abandoned COPY)."""
        self.usable = False
        self._pool.shutdown(wait=False, cancel_futures=True)


class TextPieces(_Pieces):
    """The text format decoded while it arrives, so the work overlaps the client's sending as
    PostgreSQL's does: whenever `PIECE` bytes of whole lines have come, they go to
    `decode_text_fast`."""

    def __init__(self, options: CopyOptions, columns: list[Column]) -> None:
        super().__init__(columns, threads=2)
        self.options = options

    def feed(self, data: bytearray) -> None:
        """Hand out the whole lines that have come since the last piece, once they are many."""
        if not self.usable or len(data) - self.sent < self.PIECE:
            return
        last = self.pieces[-1] if self.pieces else None
        if last is not None and last.done() and (last.exception() or last.result() is None):
            self.usable = False  # the whole stream will be decoded at the end: stop here
            return
        end = data.rfind(b"\n", self.sent) + 1
        if end <= self.sent:
            return
        with memoryview(data) as view:
            piece = view[self.sent:end].tobytes()
        options = replace(self.options, header=False) if self.sent else self.options
        self.pieces.append(self._pool.submit(decode_text_fast, piece, options, self.columns))
        self.sent = end

    def _rest(self, rest: bytes) -> pa.Table | None:
        return decode_text_fast(rest, replace(self.options, header=False), self.columns)


def _text_bytes(table: pa.Table, null_size: int) -> int:
    """The bytes the lines of `table` take in the text format: every field, delimiters and
    newlines. An empty line takes one byte but reads as a row of empty fields, which takes
    as many bytes as there are columns: comparing with the input's size finds one without a
    search for `\\n\\n`."""
    total = table.num_rows * table.num_columns
    for column in table.columns:
        total += column.null_count * null_size
        for chunk in column.chunks:
            if len(chunk):
                offsets = chunk.buffers()[1]
                kind = "q" if pa.types.is_large_string(chunk.type) else "i"
                width = 8 if kind == "q" else 4
                first = struct.unpack_from(kind, offsets, chunk.offset * width)[0]
                last = struct.unpack_from(kind, offsets, (chunk.offset + len(chunk)) * width)[0]
                total += last - first
    return total


def decode_text(data: bytes, options: CopyOptions, columns: list[Column]) -> pa.Table:
    """COPY text format rows into Arrow: tab-separated by default, backslash escapes, `\\N` for
    NULL, with PostgreSQL's messages for bad lines."""
    text = _checked_text(data)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if "\r" in text:
        lines = [ln[:-1] if ln.endswith("\r") else ln for ln in lines]
    first = 1
    if options.header and lines:
        lines = lines[1:]
        first = 2
    for i, ln in enumerate(lines):
        if ln == "\\.":  # end-of-data marker: the rest is ignored
            lines = lines[:i]
            break
    n = len(lines)
    ncols = len(columns)
    if n == 0:
        return _empty(columns)
    array = pa.array(lines, pa.string())
    if ncols == 0:
        bad = np.flatnonzero(pc.not_equal(array, "").to_numpy(zero_copy_only=False))
        if bad.size:
            raise CopyDataError(BadCopyFileFormat("extra data after last expected column"),
                                int(bad[0]) + first)
        return _empty_rows(n)
    parts = pc.split_pattern(array, options.delimiter)
    counts = pc.list_value_length(parts).to_numpy(zero_copy_only=False)
    wrong = np.flatnonzero(counts != ncols)
    if wrong.size:
        row = int(wrong[0])
        if counts[row] > ncols:
            error = BadCopyFileFormat("extra data after last expected column")
        else:
            error = BadCopyFileFormat(f'missing data for column "{columns[counts[row]].name}"')
        raise CopyDataError(error, row + first)
    flat = pc.list_flatten(parts)
    fields = []
    for j in range(ncols):
        values = flat.take(pa.array(np.arange(n, dtype=np.int64) * ncols + j))
        try:
            fields.append(_text_field_values(values, options.null))
        except CellError as exc:
            raise CopyDataError(exc.error, exc.row + first, columns[j].name,
                                values[exc.row].as_py()) from None
    return _typed_table(fields, columns, lambda row: row + first, _shown)


def _shown(values: pa.Array, row: int) -> str | None:
    return values[row].as_py()


def _text_field_values(values: pa.Array, null: str) -> pa.Array:
    """Apply NULL and backslash escapes to one column's raw text fields."""
    is_null = pc.equal(values, null)
    escaped = pc.match_substring(values, "\\")
    if pc.any(escaped).as_py():
        raw = values.to_pylist()
        mask = escaped.to_numpy(zero_copy_only=False)
        for i in np.flatnonzero(mask).tolist():
            try:
                raw[i] = _unescape(raw[i])
            except SqlVecError as exc:
                raise CellError(i, exc) from None
        values = pa.array(raw, pa.string())
    return pc.if_else(is_null, pa.scalar(None, pa.string()), values)


_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_ESCAPE_RE = re.compile(r"\\(x[0-9A-Fa-f]{1,2}|[0-7]{1,3}|.)", re.S)


def _unescape(text: str) -> str:
    """One field's backslash escapes. Octal and hex escapes are bytes, which with the rest
    must make UTF-8 text without a NUL (`\\xc3\\xa9` is é; `\\0` is 22021)."""
    out, at, check = bytearray(), 0, False
    for m in _ESCAPE_RE.finditer(text):
        out += text[at:m.start()].encode()
        s = m.group(1)
        if s[0] == "x" and len(s) > 1 or s[0] in "01234567":
            byte = int(s[1:], 16) if s[0] == "x" else int(s, 8) & 0xFF
            out.append(byte)
            check |= byte == 0 or byte >= 0x80
        else:
            out += _ESCAPES.get(s, s).encode()
        at = m.end()
    out += text[at:].encode()
    return decode_utf8(bytes(out)) if check else out.decode()


def decode_csv(data: bytes, options: CopyOptions, columns: list[Column]) -> pa.Table:
    """COPY CSV rows into Arrow: quoting, HEADER, and the NULL and quoted-empty distinction as
    PostgreSQL makes it."""
    if not columns:
        return _empty_rows(data.count(b"\n") - (1 if options.header else 0))
    body = data
    for marker in (b"\n\\.\n", b"\n\\.\r\n"):
        at = body.find(marker)
        if at >= 0:
            body = body[:at + 1]
    if body.startswith(b"\\.\n") or body == b"\\.":
        body = b""
    if not body:
        return _empty(columns)
    names = [f"c{i}" for i in range(len(columns))]
    read = pacsv.ReadOptions(column_names=names, skip_rows=1 if options.header else 0,
                             block_size=max(1 << 20, min(len(body) + 1, 1 << 28)))
    parse = pacsv.ParseOptions(delimiter=options.delimiter, quote_char=options.quote,
                               double_quote=options.escape == options.quote,
                               escape_char=False if options.escape == options.quote
                               else options.escape,
                               newlines_in_values=True, ignore_empty_lines=False)
    convert = pacsv.ConvertOptions(column_types={n: pa.string() for n in names},
                                   null_values=[options.null], strings_can_be_null=True,
                                   quoted_strings_can_be_null=False)
    if b"\0" in body:
        _checked_text(body)  # 22021: PostgreSQL's text cannot hold a NUL
    try:
        table = pacsv.read_csv(io.BytesIO(body), read_options=read, parse_options=parse,
                               convert_options=convert)
    except pa.ArrowInvalid as exc:
        if "utf8" in str(exc).lower():
            _checked_text(body)  # 22021 with the line, as for the text format
        raise CopyDataError(BadCopyFileFormat(_csv_message(str(exc), columns)),
                            _csv_line(str(exc))) from None
    first = 2 if options.header else 1
    fields = [table.column(i).combine_chunks() for i in range(len(columns))]
    return _typed_table(fields, columns, lambda row: row + first, _shown)


def _csv_message(text: str, columns: list[Column]) -> str:
    m = re.search(r"Expected (\d+) columns, got (\d+)", text)
    if m:
        got = int(m.group(2))
        if got > len(columns):
            return "extra data after last expected column"
        return f'missing data for column "{columns[got].name}"'
    if "quote" in text.lower():
        return "unterminated CSV quoted field"
    return "invalid CSV data"


def _csv_line(text: str) -> int:
    m = re.search(r"Row #(\d+)", text)
    return int(m.group(1)) if m else 1


def _empty(columns: list[Column]) -> pa.Table:
    return pa.Table.from_arrays([pa.array([], c.type.to_arrow()) for c in columns],
                                names=[c.name for c in columns])


def _empty_rows(n: int) -> pa.Table:
    """A table of n rows and no columns (COPY into a table without columns)."""
    return pa.table({"_": pa.nulls(max(0, n))}).drop_columns(["_"])


class BinaryPieces(_Pieces):
    """The binary format decoded while it arrives, for rows of one layout (no NULLs, fixed-width
    values: numbers and vectors), the bulk of binary COPY. The first row gives the row size;
    whenever `PIECE` bytes of whole rows have come they go to a worker thread, framed as a
    stream of their own and decoded only if every row has the first row's layout."""

    def __init__(self, columns: list[Column]) -> None:
        super().__init__(columns, threads=1)
        self.row = 0  # the row size, once the first row has come

    def feed(self, data: bytearray) -> None:
        """Hand out the whole rows that have come since the last piece, once they are many."""
        if not self.usable:
            return
        if not self.row:
            layout = _first_row(data, len(self.columns))
            if layout is None:
                self.usable = len(data) < self.PIECE
                return
            self.sent, self.row = layout
        rows = (len(data) - self.sent) // self.row
        if rows * self.row < self.PIECE:
            return
        end = self.sent + rows * self.row
        with memoryview(data) as view:
            piece = b"".join((BINARY_HEADER, view[self.sent:end], BINARY_TRAILER))
        self.pieces.append(self._pool.submit(_fixed_rows, piece, self.columns))
        self.sent = end

    def _rest(self, rest: bytes) -> pa.Table | None:
        return decode_binary(BINARY_HEADER + rest, self.columns)  # the rest ends in the trailer


def _row_layout(data: bytes | bytearray | memoryview, pos: int,
                ncols: int) -> tuple[list[int], list[int], int] | None:
    """The row at `pos` (past its field count): each field's size word offset from `pos` and
    its size, and the row's size; None when it is not all there or holds a NULL."""
    offsets, sizes = [], []
    p = pos + 2
    for _ in range(ncols):
        if p + 4 > len(data):
            return None
        (size,) = struct.unpack_from("!i", data, p)
        if size < 0:
            return None
        offsets.append(p - pos)
        sizes.append(size)
        p += 4 + size
    return offsets, sizes, p - pos


def _first_row(data: bytes | bytearray, ncols: int) -> tuple[int, int] | None:
    """(where the rows start, the first row's size) of a binary stream with a valid header and
    a first row without NULLs; None while too little has come or when that is not so."""
    if len(data) < 19 or bytes(data[:len(BINARY_SIGNATURE)]) != BINARY_SIGNATURE:
        return None
    flags, ext = struct.unpack_from("!iI", data, 11)
    pos = 19 + ext
    if flags & (1 << 16) or pos + 2 + 4 * ncols > len(data) \
            or struct.unpack_from("!h", data, pos)[0] != ncols:
        return None
    layout = _row_layout(data, pos, ncols)
    return None if layout is None else (pos, layout[2])


def _fixed_rows(stream: bytes, columns: list[Column]) -> pa.Table | None:
    """A piece of `BinaryPieces` decoded when all its rows share one layout, else None."""
    if _fixed_layout(stream, len(BINARY_HEADER), len(columns)) is None:
        return None
    return decode_binary(stream, columns)


def decode_binary(data: bytes | memoryview, columns: list[Column]) -> pa.Table:
    """Binary COPY: find every field's (offset, length), then decode column by column."""
    if bytes(data[:len(BINARY_SIGNATURE)]) != BINARY_SIGNATURE:
        raise CopyDataError(BadCopyFileFormat("COPY file signature not recognized"), 1)
    if len(data) < 19:
        raise CopyDataError(BadCopyFileFormat("invalid COPY file header (missing length)"), 1)
    flags, ext = struct.unpack_from("!iI", data, 11)
    if flags & (1 << 16):
        raise CopyDataError(FeatureNotSupported("COPY with OIDs is not supported"), 1)
    pos = 19 + ext
    if pos > len(data):
        raise CopyDataError(BadCopyFileFormat("invalid COPY file header (wrong length)"), 1)
    ncols = len(columns)
    if not columns:
        return _empty_rows(len(_walk_rows(data, pos, 0)[0]))
    fixed = _fixed_layout(data, pos, ncols)
    if fixed is not None:
        matrix, offsets, sizes = fixed
        n, row_size = matrix.shape
        row_starts = pos + np.arange(n, dtype=np.int64) * row_size
    else:
        starts, lengths = _find_rows(data, pos, ncols)
    arrays = []
    for j, col in enumerate(columns):
        try:
            column = None
            if fixed is not None:
                begin = offsets[j] + 4
                column = pgtypes.decode_binary_matrix(matrix[:, begin:begin + sizes[j]],
                                                      col.type)
                if column is None:  # say, text that happens to be of one length throughout
                    column = pgtypes.decode_binary_column(
                        data, row_starts + begin, np.full(n, sizes[j], np.int64), col.type)
            else:
                column = pgtypes.decode_binary_column(data, starts[:, j], lengths[:, j],
                                                      col.type)
        except CellError as exc:
            raise CopyDataError(exc.error, exc.row + 1, col.name) from None
        arrays.append(column)
    return pa.Table.from_arrays(arrays, names=[c.name for c in columns])


def _fixed_layout(data: bytes | memoryview, pos: int, ncols: int):
    """When every row has the first row's field sizes (no NULLs, fixed-width values, as with
    numbers and vectors), the rows are an (n, row_size) byte matrix: check each row's field
    count and size words with NumPy instead of walking, and return (matrix, field offsets,
    field sizes); else None."""
    if ncols == 0 or pos + 2 > len(data) or struct.unpack_from("!h", data, pos)[0] != ncols:
        return None
    layout = _row_layout(data, pos, ncols)
    if layout is None:
        return None
    offsets, sizes, row = layout
    body = len(data) - pos - 2
    if body <= 0 or body % row or data[-2:] != BINARY_TRAILER:
        return None
    n = body // row
    matrix = np.frombuffer(data, dtype=np.uint8, count=n * row, offset=pos).reshape(n, row)
    first = matrix[0]
    if not (matrix[:, :2] == first[:2]).all():
        return None
    for offset in offsets:
        if not (matrix[:, offset:offset + 4] == first[offset:offset + 4]).all():
            return None
    return matrix, offsets, sizes


def _find_rows(data: bytes | memoryview, pos: int, ncols: int) -> tuple[np.ndarray, np.ndarray]:
    """Every field's (start, length) as two (rows, ncols) arrays, for rows of varying layout
    (text, NULLs), without a Python step per field.

    A row can only start where its int16 field count is, so every place holding that number
    is tried at once (the few that are really inside values cost nothing): NumPy reads the
    fields of all of them column by column, which gives each one's successor, and the rows are
    the chain that leads from the first row to the trailer, followed in one plain list walk.
    Anything malformed breaks the chain; then `_walk_rows` walks the data and names the line."""
    found = _chain_rows(data, pos, ncols) if ncols else None
    return found if found is not None else _walk_rows(data, pos, ncols)


_LINKED_TRAILER = -2  # in `_chain_rows`: the row after this one is the trailer


def _chain_rows(data: bytes | memoryview, pos: int, ncols: int):
    buf = np.frombuffer(data, np.uint8)
    end = buf.size
    found = [np.empty(0, np.int64)]
    count_word = np.frombuffer(struct.pack("!H", ncols), np.uint16)[0]  # as stored, unswapped
    for shift in (0, 1):  # both alignments of an int16
        count = (end - pos - shift) // 2
        if count > 0:
            words = np.frombuffer(data, np.uint16, count=count, offset=pos + shift)
            found.append(np.flatnonzero(words == count_word) * 2 + (pos + shift))
    candidates = np.sort(np.concatenate(found))
    n = candidates.size
    if n == 0 or candidates[0] != pos:
        return None
    starts = np.empty((n, ncols), np.int64)
    lengths = np.empty((n, ncols), np.int64)
    at = candidates + 2
    ok = np.ones(n, bool)
    for j in range(ncols):
        ok &= at + 4 <= end
        safe = np.where(ok, at, 0)
        word = (buf[safe].astype(np.uint32) << 24) | (buf[safe + 1].astype(np.uint32) << 16) \
            | (buf[safe + 2].astype(np.uint32) << 8) | buf[safe + 3]
        size = word.view(np.int32).astype(np.int64)
        ok &= size >= -1
        starts[:, j] = at + 4
        lengths[:, j] = size
        at = at + 4 + np.maximum(size, 0)
        ok &= at <= end
    safe = np.where(ok & (at + 2 <= end), at, 0)
    trailer = ok & (at + 2 <= end) & (buf[safe] == 0xFF) & (buf[safe + 1] == 0xFF)
    following = np.minimum(np.searchsorted(candidates, at), n - 1)
    linked = ok & (candidates[following] == at)
    successor = np.where(trailer, _LINKED_TRAILER, np.where(linked, following, -1)).tolist()
    chain = []
    i = 0
    while i >= 0:  # successors lie further on, so this ends
        chain.append(i)
        i = successor[i]
    if i != _LINKED_TRAILER:
        return None
    rows = np.array(chain, np.int64)
    return starts[rows], lengths[rows]


def _walk_rows(data: bytes | memoryview, pos: int, ncols: int):
    unpack_h = struct.Struct("!h").unpack_from
    unpack_i = struct.Struct("!i").unpack_from
    starts: list[int] = []
    lengths: list[int] = []
    end = len(data)
    line = 0
    while True:
        line += 1
        if pos + 2 > end:
            raise CopyDataError(BadCopyFileFormat("unexpected EOF in COPY data"), line)
        (count,) = unpack_h(data, pos)
        pos += 2
        if count == -1:
            break
        if count != ncols:
            raise CopyDataError(BadCopyFileFormat(
                f"row field count is {count}, expected {ncols}"), line)
        for _ in range(ncols):
            if pos + 4 > end:
                raise CopyDataError(BadCopyFileFormat("unexpected EOF in COPY data"), line)
            (size,) = unpack_i(data, pos)
            pos += 4
            starts.append(pos)
            lengths.append(size)
            if size > 0:
                pos += size
                if pos > end:
                    raise CopyDataError(BadCopyFileFormat("unexpected EOF in COPY data"), line)
            elif size < -1:
                raise CopyDataError(BadCopyFileFormat("invalid field size"), line)
    shape = (len(starts) // ncols if ncols else line - 1, ncols)
    return (np.array(starts, dtype=np.int64).reshape(shape),
            np.array(lengths, dtype=np.int64).reshape(shape))


# COPY TO: Arrow -> data ------------------------------------------------------------------------

_COPY_DATA = struct.Struct("!ci")


def encode_rows(table: pa.Table, types: list[SqlType], options: CopyOptions,
                float_digits: int = 1, prefix: bytes = b"") -> bytes:
    """Rows of `table` as a run of CopyData messages, one row each (as PostgreSQL sends);
    `prefix` goes in front of the first row (the binary file header travels with it)."""
    n = table.num_rows
    if n == 0:
        return copy_data(prefix) if prefix else b""
    if options.format == "binary":
        cells = [pgtypes.encode_cells(table.column(i), t, pgtypes.BINARY)
                 for i, t in enumerate(types)]
        header = struct.pack("!h", len(types))
        rows = pc.binary_join_element_wise(
            pa.scalar(header, pa.large_binary()), *cells, pa.scalar(b"", pa.large_binary()))
    else:
        fields = []
        for i, t in enumerate(types):
            text = pgtypes.text_payloads(table.column(i).combine_chunks(), t, float_digits)
            fields.append(_csv_field(text, options) if options.format == "csv"
                          else _text_field(text, options))
        rows = pc.binary_join_element_wise(*fields, options.delimiter) if fields \
            else pa.array([""] * n)
        rows = pc.binary_join_element_wise(rows, "\n", "").cast(pa.large_binary())
    if prefix:
        empty = pa.scalar(b"", pa.large_binary())
        first = pc.binary_join_element_wise(pa.scalar(prefix, pa.large_binary()), rows[:1], empty)
        rows = pa.concat_arrays([first, rows[1:]])
    return _copy_data_messages(rows)


def _copy_data_messages(rows: pa.Array) -> bytes:
    lengths = pc.binary_length(rows).to_numpy(zero_copy_only=False) + 4
    header = np.empty(len(lengths), dtype=[("t", "S1"), ("len", ">i4")])
    header["t"] = b"d"
    header["len"] = lengths
    prefix = fixed_width(header.view(np.uint8), 5, len(lengths))
    joined = pc.binary_join_element_wise(prefix, rows, pa.scalar(b"", pa.large_binary()))
    return concat_binary(joined)


def _text_field(text: pa.Array, options: CopyOptions) -> pa.Array:
    escaped = pc.replace_substring(text, "\\", "\\\\")
    for raw, esc in (("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t")):
        escaped = pc.replace_substring(escaped, raw, esc)
    if options.delimiter not in "\t\n\r\\":
        escaped = pc.replace_substring(escaped, options.delimiter, "\\" + options.delimiter)
    return escaped.fill_null(options.null)


def _csv_field(text: pa.Array, options: CopyOptions) -> pa.Array:
    q, e, d = options.quote, options.escape, options.delimiter
    special = "[" + re.escape(q + d + "\r\n" + (e if e != q else "")) + "]"
    needs = pc.or_(pc.match_substring_regex(text, special),
                   pc.equal(text, options.null))
    needs = pc.or_(needs, pc.equal(text, "\\."))
    body = text
    if e != q:
        body = pc.replace_substring(body, e, e + e)
    body = pc.replace_substring(body, q, e + q)
    quoted = pc.binary_join_element_wise(q, body, q, "")
    return pc.if_else(needs, quoted, text).fill_null(options.null)


def header_line(names: list[str], options: CopyOptions) -> bytes:
    """The HEADER line of csv (and text) COPY TO output, as one CopyData message."""
    text = pa.array(names, pa.string())
    fields = _csv_field(text, options) if options.format == "csv" else _text_field(text, options)
    line = (options.delimiter.join(fields.to_pylist()) + "\n").encode()
    return _COPY_DATA.pack(b"d", len(line) + 4) + line


def copy_data(payload: bytes) -> bytes:
    """A CopyData message around `payload`, built without a message object on the COPY TO hot
    path."""
    return _COPY_DATA.pack(b"d", len(payload) + 4) + payload
