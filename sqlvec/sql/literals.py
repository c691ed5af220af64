"""String constants with escapes, decoded once and exactly as PostgreSQL decodes them.

- `E'...'` (`escape_string`): `\\b \\f \\n \\r \\t`; `\\o`, `\\oo`, `\\ooo` (octal) and `\\xh`,
  `\\xhh` (hex) byte values; `\\uXXXX` and `\\UXXXXXXXX` code points, UTF-16 surrogate pairs
  included; `\\'` and `''` for a quote; a backslash before any other character keeps the
  character. Bytes from octal and hex escapes must form UTF-8 text, without NUL (22021).
- `U&'...'` (`unicode_string`): `\\XXXX` and `\\+XXXXXX` code points (or with the escape
  character of a `UESCAPE` clause), the escape character doubled for itself.

sqlglot's tokenizer decodes `E'...'` by rules of its own, and its result was decoded a second
time when compiled; the dialect now builds each such constant from its source text with these
functions, into a plain string literal. Errors are PostgreSQL's, positioned as it positions them
(1-based characters into the statement): 42601 for a bad code point or surrogate pair, 22025 for
a malformed `\\u` escape.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from sqlvec.errors import SqlVecError, SyntaxError_
from sqlvec.types import decode_utf8

__all__ = ["escape_string", "unicode_string", "check_uescape"]

_OCTAL = re.compile(r"[0-7]{1,3}")
_HEX = re.compile(r"[0-9A-Fa-f]{1,2}")
_CODE = {"u": re.compile(r"[0-9A-Fa-f]{4}"), "U": re.compile(r"[0-9A-Fa-f]{8}")}
_U_CODE = re.compile(r"[0-9A-Fa-f]{4}")
_PLUS_CODE = re.compile(r"[0-9A-Fa-f]{6}")
_PLAIN = re.compile(r"[^\\']+")
_SIMPLE = {"b": b"\b", "f": b"\f", "n": b"\n", "r": b"\r", "t": b"\t"}


def escape_string(pieces: Sequence[tuple[str, int]]) -> str:
    """The value of an `E'...'` constant from its pieces: the text between each pair of quotes
    as written (a constant continues across a newline: `E'a'<newline>'b'`) and the 0-based
    offset of that text in the statement."""
    out = bytearray()
    check = False  # a byte escape made a NUL or a non-ASCII byte: the result must be checked
    pending: int | None = None  # a UTF-16 high surrogate waiting for its low half
    for raw, start in pieces:
        i, n = 0, len(raw)
        while i < n:
            ch = raw[i]
            if pending is not None and not (ch == "\\" and raw[i + 1:i + 2] in ("u", "U")):
                raise _pair_error(ch, start + i)
            if ch == "'":  # a doubled quote
                out += b"'"
                i += 2
                continue
            if ch != "\\":
                plain = _PLAIN.match(raw, i)
                out += plain.group().encode()  # type: ignore[union-attr]
                i = plain.end()  # type: ignore[union-attr]
                continue
            kind = raw[i + 1] if i + 1 < n else "\\"
            if kind in "01234567":
                digits = _OCTAL.match(raw, i + 1)
                byte = int(digits.group(), 8) & 0xFF  # type: ignore[union-attr]
                out.append(byte)
                check |= byte == 0 or byte >= 0x80
                i = digits.end()  # type: ignore[union-attr]
            elif kind == "x" and (digits := _HEX.match(raw, i + 2)):
                byte = int(digits.group(), 16)
                out.append(byte)
                check |= byte == 0 or byte >= 0x80
                i = digits.end()
            elif kind in "uU":
                digits = _CODE[kind].match(raw, i + 2)
                if digits is None:
                    raise SqlVecError("invalid Unicode escape", sqlstate="22025",
                                      hint="Unicode escapes must be \\uXXXX or \\UXXXXXXXX.",
                                      position=start + i + 1)
                code, text = int(digits.group(), 16), raw[i:digits.end()]
                if pending is not None:
                    if not _low_surrogate(code):
                        raise _pair_error(text, start + i)
                    out += _pair(pending, code).encode()
                    pending = None
                elif code == 0 or code > 0x10FFFF:
                    raise SyntaxError_(f'invalid Unicode escape value at or near "{text}"',
                                       position=start + i + 1)
                elif _high_surrogate(code):
                    pending = code
                elif _low_surrogate(code):
                    raise _pair_error(text, start + i)
                else:
                    out += chr(code).encode()
                i = digits.end()
            else:  # \b \f \n \r \t, or any other character as itself
                out += _SIMPLE.get(kind) or kind.encode()
                i += 2
    if pending is not None:
        raw, start = pieces[-1]
        raise _pair_error("'", start + len(raw))  # at the closing quote
    return decode_utf8(out) if check else out.decode()


def unicode_string(raw: str, start: int, escape: str = "\\") -> str:
    """The value of `U&'raw'` (the text between the quotes as written, 0-based `start` in the
    statement), with `escape` as the escape character (`UESCAPE`)."""
    out: list[str] = []
    pending: int | None = None
    i, n = 0, len(raw)
    while i < n:
        ch = raw[i]
        if ch != escape:
            if pending is not None:
                raise SyntaxError_("invalid Unicode surrogate pair", position=start + i + 1)
            out.append(ch)
            i += 2 if ch == "'" else 1  # a doubled quote is one
            continue
        position = start + i + 1
        if raw[i + 1:i + 2] == escape:
            out.append(escape)
            i += 2
            continue
        if digits := _U_CODE.match(raw, i + 1):
            width = 5
        elif raw[i + 1:i + 2] == "+" and (digits := _PLUS_CODE.match(raw, i + 2)):
            width = 8
        else:
            raise SyntaxError_("invalid Unicode escape", position=position,
                               hint="Unicode escapes must be \\XXXX or \\+XXXXXX.")
        code = int(digits.group(), 16)
        if code == 0 or code > 0x10FFFF:
            raise SyntaxError_("invalid Unicode escape value", position=position)
        if pending is not None:
            if not _low_surrogate(code):
                raise SyntaxError_("invalid Unicode surrogate pair", position=position)
            out.append(_pair(pending, code))
            pending = None
        elif _low_surrogate(code):
            raise SyntaxError_("invalid Unicode surrogate pair", position=position)
        elif _high_surrogate(code):
            pending = code
        else:
            out.append(chr(code))
        i += width
    if pending is not None:
        raise SyntaxError_("invalid Unicode surrogate pair", position=start + n + 1)
    return "".join(out)


def check_uescape(escape: str, text: str, position: int) -> str:
    """The escape character of `UESCAPE 'c'`: one character, not a hex digit, `+`, a quote
    or white space (42601 otherwise, at the `'c'` written as `text`)."""
    if len(escape) != 1 or escape in "0123456789abcdefABCDEF+'\" \t\n\r\f\v":
        raise SyntaxError_(f'invalid Unicode escape character at or near "{text}"',
                           position=position)
    return escape


def _high_surrogate(code: int) -> bool:
    return 0xD800 <= code <= 0xDBFF


def _low_surrogate(code: int) -> bool:
    return 0xDC00 <= code <= 0xDFFF


def _pair(high: int, low: int) -> str:
    return chr(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))


def _pair_error(near: str, offset: int) -> SyntaxError_:
    return SyntaxError_(f'invalid Unicode surrogate pair at or near "{near}"', position=offset + 1)
