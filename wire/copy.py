"""COPY ... FROM STDIN / TO STDOUT: the text, csv and binary data formats.

The engine parses the statement and its options (a `CopyCommand` from `Session.prepare`); the
wire moves the data: it decodes what the client sends into an Arrow table of the target
columns' types and hands it to `Session.copy_in`, and for COPY TO encodes the rows of
`Session.copy_query`. Decoding works on
whole columns, not values: text data is split into lines and fields with Arrow string kernels,
csv goes through Arrow's csv reader, and binary data is a NumPy reshape when every row has the
same layout (numbers and fixed-size vectors), else walked once to find each field's offset,
reading only the size words that vary (`binary_rows`: a text column, NULLs).
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
import mmap
import re
import struct
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from sqlvec.errors import BadCopyFileFormat, FeatureNotSupported, SqlVecError
from sqlvec.memory import KeptMemory, populated
from sqlvec.session import CopyOptions
from sqlvec.types import SqlType, decode_utf8
from wire import binary_rows, pgtypes
from wire.codec import MAX_MESSAGE_SIZE, SocketStream, body_length, concat_binary, fixed_width
from wire.messages import CopyData
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
    if isinstance(data, memoryview):
        data = data.obj if data.contiguous and data.nbytes == len(data.obj) else bytes(data)
    return _text_fast(data, len(data), options, columns)


def _text_fast(data: bytes | bytearray | mmap.mmap, end: int, options: CopyOptions,
               columns: list[Column], threads: bool = True) -> pa.Table | None:
    """`decode_text_fast` of `data[:end]`, read where it lies (a chunk of `CopyStream`);
    `threads`: whether Arrow's reader spreads the blocks over its threads (a piece, one
    block, is decoded on a thread of its own)."""
    ncols = len(columns)
    delimiter, null = options.delimiter, options.null
    if not ncols or not delimiter.isascii() or delimiter in "\\\r\n" or end == 0:
        return None
    if data.find(b"\r", 0, end) >= 0 or data.find(b"\0", 0, end) >= 0:
        return None
    start, first = 0, 1
    if options.header:
        start = data.find(b"\n", 0, end) + 1
        if start <= 0 or start == end:
            return None
        first = 2
    body = memoryview(data)[start:end]
    # (NumPy counts four times faster than bytes.count, and without holding the GIL)
    backslashes = int(np.count_nonzero(
        np.frombuffer(data, np.uint8, count=end - start, offset=start) == 0x5C))
    null_backslashes = null.count("\\")  # NULL as PostgreSQL's default `\N`, or none at all
    if null_backslashes > 1 or null_backslashes == 1 and null != "\\N" \
            or backslashes and not null_backslashes:
        return None
    names = [f"c{i}" for i in range(ncols)]
    try:
        table = pacsv.read_csv(
            pa.BufferReader(pa.py_buffer(body)),
            read_options=pacsv.ReadOptions(column_names=names, block_size=_TEXT_BLOCK,
                                           use_threads=threads),
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


class CopyStream:
    """The data of one COPY FROM STDIN as it arrives: received straight from the socket into
    chunks of `CHUNK` bytes that never move (a growing bytearray would be reallocated and
    copied over and over: the receive loop's largest cost), so that each full chunk's whole
    lines or rows go to a decoding thread as they lie (`_Pieces.cut`). The part of a line or
    row that a full chunk ends in starts the next chunk (a copy of less than a row). `whole`
    gives the stream in one piece, for the decoders that take it at once."""

    CHUNK = 4 << 20

    def __init__(self, pieces: _Pieces | None = None) -> None:
        self.pieces = pieces
        self.size = 0  # bytes received
        self._full: list[tuple[mmap.mmap, int, int]] = []  # (chunk, first own byte, end)
        self._buf: mmap.mmap | bytes = b""
        self._own = 0  # the current chunk's bytes before this repeat the previous one's end
        self._end = 0

    def receive(self, stream: SocketStream, n: int, max_size: int = MAX_MESSAGE_SIZE,
                progress: Progress | None = None) -> None:
        """The next `n` bytes of the client's data (a CopyData message's body), then those of
        the CopyData messages that follow, until another message comes (its bytes are handed
        back to `stream`). Each receive goes straight into the chunk, as much as the client
        has sent, so the next message's header usually comes with the data before it and
        costs no receive of its own; it is read where it lands and the data after it moved
        over it (`_Landed`). `progress` counts the bytes as they are taken."""
        landed = _Landed(self._end, self._end)
        while True:
            if n:
                taken = self._take(stream, landed, n)
                n -= taken
                if progress is not None:
                    progress.bytes_processed += taken
                continue
            n = self._next_header(stream, landed, max_size)
            if n is None:
                return

    def _take(self, stream: SocketStream, landed: _Landed, n: int) -> int:
        """Up to `n` bytes of a message's body into place: the landed ones, else received."""
        if landed.start == landed.end:
            if self._end == len(self._buf):
                self._next_chunk()
            with memoryview(self._buf) as view:
                got = stream.receive_into(view[self._end:])
            landed.start, landed.end = self._end, self._end + got
        take = min(n, landed.end - landed.start)
        if landed.start != self._end:  # a header was read in between: close the gap
            self._buf.move(self._end, landed.start, take)
        landed.start += take
        self._end += take
        self.size += take
        return take

    def _next_header(self, stream: SocketStream, landed: _Landed, max_size: int) -> int | None:
        """The body size of the CopyData message after the data taken so far (its header
        read, from what landed or received over the data's last bytes, kept aside), or None
        where it is not one, or not whole, or does not fit: the bytes from there on are
        handed back to `stream`, which reads the message as usual."""
        buf = self._buf
        if landed.start == landed.end:
            at = self._end - HEADER_SIZE
            if at < 0:
                return None
            kept = buf[at:self._end]
            with memoryview(buf) as view:
                got = stream.receive_into(view[at:])
            head = buf[at:at + min(got, HEADER_SIZE)]
            landed.start, landed.end = self._end, at + got
            if got < HEADER_SIZE:
                landed.start = landed.end
            buf[at:self._end] = kept
        else:
            head = buf[landed.start:min(landed.start + HEADER_SIZE, landed.end)]
            landed.start += len(head)
        if len(head) == HEADER_SIZE and head[:1] == CopyData.TYPE:
            return body_length(int.from_bytes(head[1:], "big", signed=True), startup=False,
                               max_size=max_size)
        stream.feed(head + buf[landed.start:landed.end])
        landed.start = landed.end
        return None

    def append(self, data: bytes | bytearray | memoryview) -> None:
        """Data that came otherwise (a CopyData message read whole)."""
        with memoryview(data) as view:
            at = 0
            while at < len(view):
                if self._end == len(self._buf):
                    self._next_chunk()
                take = min(len(view) - at, len(self._buf) - self._end)
                self._buf[self._end:self._end + take] = view[at:at + take]
                self._end += take
                at += take
        self.size += len(data)

    def _next_chunk(self) -> None:
        buf, end = self._buf, self._end
        cut = end
        if self.pieces is not None and end:
            cut = self.pieces.cut(buf, end)
        if end:
            self._full.append((buf, self._own, end))
        carry = end - cut
        size = max(self.CHUNK, 2 * carry)
        self._buf = _chunks.take() if size == _chunks.size else populated(size)
        self._buf[:carry] = buf[cut:end]
        self._own = self._end = carry

    def finish(self) -> pa.Table | None:
        """The stream decoded by its pieces (None: decode `whole` instead)."""
        if self.pieces is None:
            return None
        return self.pieces.finish(self._buf, self._end)

    def whole(self) -> bytes | memoryview:
        """The stream as one bytes-like object (a copy only when it took several chunks)."""
        if not self._full:
            return memoryview(self._buf)[:self._end]
        with memoryview(self._buf) as last:
            return b"".join([memoryview(buf)[own:end] for buf, own, end in self._full]
                            + [last[self._own:self._end]])

    def close(self) -> None:
        """Drop whatever decoding is still queued (a failed or abandoned COPY), and, once no
        decoding thread can still read them, the decoded pieces, keeping the chunks for the
        next COPY."""
        if self.pieces is not None:
            self.pieces.close()
            if not all(piece.done() for piece in self.pieces.pieces):
                return
            self.pieces.pieces, self.pieces.staged = [], None  # (what they refer to may go)
        chunks = [buf for buf, _, _ in self._full] + [self._buf]
        if self.pieces is not None:
            chunks += self.pieces.memory
            self.pieces.memory = []
        self._full, self._buf, self._own, self._end = [], b"", 0, 0
        for buf in chunks:
            if isinstance(buf, mmap.mmap):
                _chunks.give_back(buf)


HEADER_SIZE = 5  # a message's type byte and length


class Progress(Protocol):
    """Where a COPY's bytes are counted as they arrive (pg_stat_progress_copy's record)."""

    bytes_processed: int


@dataclass
class _Landed:
    """Bytes `CopyStream.receive` received into the chunk that it has not taken yet:
    `buf[start:end]`, at or after the data's end."""

    start: int
    end: int


# Chunks kept between COPYs (128 MiB at most), received (or decoded) into at memcpy speed
# rather than at a page fault per 4 KiB (`sqlvec.memory`): a 100k-row binary COPY of 128-d
# vectors takes 14 for the stream and 14 for its decoded vectors.
KEPT_CHUNKS = 32
_chunks = KeptMemory(CopyStream.CHUNK, KEPT_CHUNKS)


class _Pieces(ABC):
    """A stream decoded while it arrives: whenever a chunk of `CopyStream` is full, `cut` hands
    its whole lines or rows to worker threads (Arrow's and NumPy's kernels release the GIL),
    `finish` returns the whole stream's table, or None when any piece was not plain data or
    failed: the caller then decodes the whole stream as usual, which gives PostgreSQL's error
    and line exactly. Pieces may be logged ahead (`stage`), but none becomes part of a table
    before the COPY's commit, so a COPY that fails or is abandoned loads no row."""

    def __init__(self, columns: list[Column], threads: int) -> None:
        self.columns = columns
        self.pieces: list[Future] = []
        self.usable = bool(columns)
        # Called with each decoded piece and its index in the stream, on its thread (the
        # engine's `CopyLoader.stage`): what it returns is kept, in order, as `staged`; an
        # error leaves `staged` None.
        self.stage: Callable[[pa.Table, int], object] | None = None
        self.staged: list | None = None
        self.memory: list[mmap.mmap] = []  # kept memory the pieces' values lie in (`hold`)
        self._memory_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="copy-decode")

    def hold(self, buffer: mmap.mmap) -> mmap.mmap:
        """`buffer` (kept memory) now holds values of this stream's: given back at its end."""
        with self._memory_lock:
            self.memory.append(buffer)
        return buffer

    def _submit(self, decode: Callable[..., pa.Table | None], *args) -> None:
        """Decode a piece on a worker thread, and stage it there too."""
        self.pieces.append(self._pool.submit(self._piece, len(self.pieces), decode, *args))

    def _piece(self, index: int, decode: Callable[..., pa.Table | None],
               *args) -> tuple[pa.Table, object] | None:
        table = decode(*args)
        if table is None:
            return None
        return table, self._staged(table, index)

    def _staged(self, table: pa.Table, index: int) -> object:
        if self.stage is None:
            return None
        try:
            return self.stage(table, index)
        except Exception:  # noqa: BLE001 - the rows then go the usual way, which reports it
            return None

    def cut(self, buf: mmap.mmap, end: int) -> int:
        """`buf[:end]` is a full chunk: hand its whole lines or rows to a worker thread and
        return where they end (what follows starts the next chunk)."""
        last = self.pieces[-1] if self.pieces else None
        if last is not None and last.done() and (last.exception() or last.result() is None):
            self.usable = False  # the whole stream will be decoded at the end: stop here
        if not self.usable:
            return end
        return self._cut(buf, end)

    @abstractmethod
    def _cut(self, buf: mmap.mmap, end: int) -> int:
        """`cut` for a stream still decoded in pieces."""

    @abstractmethod
    def _rest(self, buf: mmap.mmap, end: int) -> list[pa.Table] | None:
        """The tables of what came after the last piece, `buf[:end]` (perhaps nothing)."""

    def finish(self, buf: mmap.mmap, end: int) -> pa.Table | None:
        """The decoded stream (the pieces, then the rest, `buf[:end]`), or None."""
        try:
            if not self.usable or not self.pieces:
                return None
            pieces = [future.result() for future in self.pieces]
            rest = self._rest(buf, end)
            if rest is None or any(piece is None for piece in pieces):
                return None
            pieces += [(table, self._staged(table, len(pieces) + i))
                       for i, table in enumerate(t for t in rest if t.num_rows)]
            staged = [piece[1] for piece in pieces]
            if self.stage is not None and None not in staged:
                self.staged = staged
            # Not one chunk: the engine stores staged pieces as they are, and joins the
            # columns only when it shapes the rows itself.
            return pa.concat_tables([piece[0] for piece in pieces])
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
    PostgreSQL's does: each full chunk's whole lines go to `decode_text_fast` as they lie."""

    def __init__(self, options: CopyOptions, columns: list[Column]) -> None:
        super().__init__(columns, threads=2)
        self.options = options

    def _cut(self, buf: mmap.mmap, end: int) -> int:
        cut = buf.rfind(b"\n", 0, end) + 1  # 0: a line longer than the chunk, carried whole
        if cut:
            options = replace(self.options, header=False) if self.pieces else self.options
            self._submit(_text_fast, buf, cut, options, self.columns, False)
        return cut

    def _rest(self, buf: mmap.mmap, end: int) -> list[pa.Table] | None:
        if end == 0:
            return []
        table = _text_fast(buf, end, replace(self.options, header=False), self.columns, False)
        return None if table is None else [table]


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
    """The binary format decoded while it arrives: each full chunk's whole rows go to a worker
    thread as they lie. While the rows have the first row's layout (no NULLs, fixed-width
    values: numbers and vectors, the bulk of binary COPY) a chunk's rows are one NumPy
    reshape; otherwise (a text column, NULLs) `binary_rows` walks them, reading only the size
    words that vary from row to row, and the worker gathers each column from the fields'
    offsets."""

    def __init__(self, columns: list[Column]) -> None:
        super().__init__(columns, threads=2)
        self.sizes: binary_rows.Template | None = None  # once the first row has come
        self.layout: _Layout | None = None  # while every row has the first row's layout

    def _memory(self, t: SqlType) -> np.ndarray | None:
        """Kept memory for a piece's vectors of type `t` (a chunk's worth: a piece's vectors
        take less than the chunk it came in), given back with the chunks (`CopyStream.close`)."""
        if not t.is_vector:
            return None
        return np.frombuffer(self.hold(_chunks.take()), t.vector_dtype)

    def _cut(self, buf: mmap.mmap, end: int) -> int:
        view = memoryview(buf)[:end]
        start = 0
        if self.sizes is None:  # the first chunk: the header, then the first row
            start = _rows_start(view, len(self.columns))
            sizes = None if start is None else binary_rows.template(
                view, start, [c.type for c in self.columns])
            if sizes is None:
                self.usable = False
                return end
            self.sizes = sizes
            if None not in sizes:
                self.layout = _row_layout(view, start, len(self.columns))
        layout = self.layout
        if layout is not None:
            rows = (end - start) // layout.row
            if rows and layout.matches(view, start, rows):
                cut = start + rows * layout.row
                self._submit(_fixed_piece, view[start:cut], self.columns, layout, True,
                             self._memory)
                return cut
            self.layout = None  # rows of another layout: walked from here on
        found = self._walk(view, start, end)
        if found is None:
            self.usable = False
            return end
        stop, starts, lengths = found
        self._submit(_walked_piece, view[start:stop], starts - start, lengths, self.columns,
                     self._memory)
        return stop

    def _walk(self, view: memoryview, start: int, end: int,
              whole: bool = False) -> tuple[int, np.ndarray, np.ndarray] | None:
        """(where the rows end, their fields' starts and lengths) of the whole rows from
        `start`: walked with the template, or again reading every size word when the
        template does not fit them (it then stays so); None when the rows are malformed or
        none ends by `end` (or, `whole`, when they do not end exactly there)."""
        assert self.sizes is not None
        while True:
            starts, stop = binary_rows.walk(view, start, end, self.sizes)
            found = binary_rows.fields(view, starts, self.sizes) \
                if starts and (stop == end or not whole) else None
            if found is not None:
                return stop, found[0], found[1]
            if all(size is None for size in self.sizes):
                return None
            self.sizes = binary_rows.varying(len(self.columns))

    def _rest(self, buf: mmap.mmap, end: int) -> list[pa.Table] | None:
        if self.sizes is None or end < 2 or buf[end - 2:end] != BINARY_TRAILER:
            return None  # the rest is whole rows, then the trailer
        if end == 2:
            return []
        view = memoryview(buf)[:end - 2]
        layout = self.layout
        if layout is not None and (end - 2) % layout.row == 0:
            table = _fixed_piece(view, self.columns, layout, memory=self._memory)
            if table is not None:
                return [table]
        found = self._walk(view, 0, end - 2, whole=True)
        if found is None:
            return None
        table = _walked_piece(view, found[1], found[2], self.columns, self._memory)
        return None if table is None else [table]


def _walked_piece(data: memoryview, starts: np.ndarray, lengths: np.ndarray,
                  columns: list[Column], memory: Callable[[SqlType], np.ndarray | None] =
                  lambda t: None) -> pa.Table | None:
    """A piece of `BinaryPieces` whose rows were walked, decoded column by column from its
    fields' offsets (a vector column's values into `memory(type)`, where it gives some);
    None when a value does not decode (the whole stream decoder names it)."""
    arrays = []
    for j, col in enumerate(columns):
        try:
            arrays.append(pgtypes.decode_binary_column(data, starts[:, j], lengths[:, j],
                                                       col.type, memory(col.type)))
        except CellError:
            return None
    return pa.Table.from_arrays(arrays, names=[c.name for c in columns])


@dataclass(frozen=True)
class _Layout:
    """The layout every row of a fixed-layout binary stream shares (the first row's): each
    field's size word offset from the row's start and its size, the row's size, and the
    row's field count and size words (as a structured dtype and their values), which every
    row must repeat."""

    offsets: list[int]
    sizes: list[int]
    row: int
    words: np.dtype
    expected: np.void

    def matches(self, data: bytes | bytearray | memoryview, pos: int, n: int) -> bool:
        """Whether the n rows at `pos` all have this layout (their words compared at once)."""
        rec = np.frombuffer(data, self.words, count=n, offset=pos)
        return all(bool((rec[name] == self.expected[name]).all()) for name in self.words.names)


def _row_layout(data: bytes | bytearray | memoryview, pos: int, ncols: int) -> _Layout | None:
    """The layout of the row at `pos` (at its field count); None when it is not all there or
    holds a NULL."""
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
    row = p - pos
    if row > len(data) - pos:
        return None
    words = np.dtype({"names": ["count"] + [f"size{j}" for j in range(ncols)],
                      "formats": ["<u2"] + ["<u4"] * ncols,
                      "offsets": [0] + offsets, "itemsize": row})
    expected = np.frombuffer(data, words, count=1, offset=pos)[0].copy()
    return _Layout(offsets, sizes, row, words, expected)


def _rows_start(data: bytes | bytearray | memoryview, ncols: int) -> int | None:
    """Where the rows of a binary stream start, after a valid header; None while too little
    has come or when the header is not one this decoder takes (the whole stream decoder then
    gives the error)."""
    if len(data) < 19 or bytes(data[:len(BINARY_SIGNATURE)]) != BINARY_SIGNATURE:
        return None
    flags, ext = struct.unpack_from("!iI", data, 11)
    pos = 19 + ext
    if flags & (1 << 16) or pos + 2 + 4 * ncols > len(data) \
            or struct.unpack_from("!h", data, pos)[0] != ncols:
        return None
    return pos


def _fixed_piece(data: memoryview, columns: list[Column], layout: _Layout,
                 checked: bool = False, memory: Callable[[SqlType], np.ndarray | None] =
                 lambda t: None) -> pa.Table | None:
    """A piece of `BinaryPieces` (whole rows, no header or trailer) decoded when all its rows
    have `layout` (`checked`: known already), else None; vectors as `_walked_piece`'s."""
    n = len(data) // layout.row
    if not checked and not layout.matches(data, 0, n):
        return None
    matrix = np.frombuffer(data, np.uint8, count=n * layout.row).reshape(n, layout.row)
    return _matrix_table(data, 0, matrix, layout, columns, memory)


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
        return _matrix_table(data, pos, *fixed, columns)
    starts, lengths = _find_rows(data, pos, columns)
    arrays = []
    for j, col in enumerate(columns):
        try:
            arrays.append(pgtypes.decode_binary_column(data, starts[:, j], lengths[:, j],
                                                       col.type))
        except CellError as exc:
            raise CopyDataError(exc.error, exc.row + 1, col.name) from None
    return pa.Table.from_arrays(arrays, names=[c.name for c in columns])


def _matrix_table(data: bytes | memoryview, pos: int, matrix: np.ndarray, layout: _Layout,
                  columns: list[Column], memory: Callable[[SqlType], np.ndarray | None] =
                  lambda t: None) -> pa.Table:
    """The rows of one layout, an (n, row size) byte matrix at `pos` of `data`, decoded
    column by column from slices of the matrix (vectors into `memory(type)` where it gives
    some)."""
    n = matrix.shape[0]
    arrays = []
    for j, col in enumerate(columns):
        begin, size = layout.offsets[j] + 4, layout.sizes[j]
        try:
            column = pgtypes.decode_binary_matrix(matrix[:, begin:begin + size], col.type,
                                                  memory(col.type))
            if column is None:  # say, text that happens to be of one length throughout
                starts = pos + np.arange(n, dtype=np.int64) * layout.row + begin
                column = pgtypes.decode_binary_column(data, starts, np.full(n, size, np.int64),
                                                      col.type)
        except CellError as exc:
            raise CopyDataError(exc.error, exc.row + 1, col.name) from None
        arrays.append(column)
    return pa.Table.from_arrays(arrays, names=[c.name for c in columns])


def _fixed_layout(data: bytes | memoryview, pos: int,
                  ncols: int) -> tuple[np.ndarray, _Layout] | None:
    """When every row has the first row's field sizes (no NULLs, fixed-width values, as with
    numbers and vectors), the rows are an (n, row_size) byte matrix: check each row's field
    count and size words with NumPy instead of walking, and return (matrix, layout); else
    None."""
    if ncols == 0 or pos + 2 > len(data) or struct.unpack_from("!h", data, pos)[0] != ncols:
        return None
    layout = _row_layout(data, pos, ncols)
    if layout is None:
        return None
    body = len(data) - pos - 2
    if body <= 0 or body % layout.row or data[-2:] != BINARY_TRAILER:
        return None
    n = body // layout.row
    if not layout.matches(data, pos, n):
        return None
    matrix = np.frombuffer(data, np.uint8, count=n * layout.row, offset=pos)
    return matrix.reshape(n, layout.row), layout


def _find_rows(data: bytes | memoryview, pos: int,
               columns: list[Column]) -> tuple[np.ndarray, np.ndarray]:
    """Every field's (start, length) as two (rows, ncols) arrays, for rows of varying layout
    (text, NULLs): `binary_rows` walks them reading only the size words that vary (with the
    first row's template, then with every size word read), which finds exactly the rows
    of a stream that is well formed. Anything else goes to `_walk_rows`, which walks field
    by field and names the line."""
    end = len(data) - 2
    sizes = binary_rows.template(data, pos, [c.type for c in columns]) \
        if end >= pos and bytes(data[end:]) == BINARY_TRAILER else None
    tried = [sizes] if sizes is not None and None in sizes else []
    if sizes is not None:
        tried.append(binary_rows.varying(len(columns)))
    for template in tried:
        starts, stop = binary_rows.walk(data, pos, end, template)
        if stop == end:
            found = binary_rows.fields(data, starts, template)
            if found is not None:
                return found
    return _walk_rows(data, pos, len(columns))


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
