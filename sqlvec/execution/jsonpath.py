"""SQL/JSON path language: PostgreSQL's `jsonpath` parsed, printed and evaluated.

`parse(text)` reads a path into a tree of `Node`s (42601 syntax errors worded as PostgreSQL's
`syntax error at or near "x" of jsonpath input`), `Path.text()` prints it as PostgreSQL's
jsonpath_out does (the canonical form the type stores), and `Path.run(document, variables)`
evaluates it over one parsed JSON document (Python dicts, lists, strings, bools, None and
Decimal numbers), in lax or strict mode with PostgreSQL's errors (`PathError`, suppressed by
callers that run silently). The SQL functions over it live in expressions/json_path.py.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache

from sqlvec.errors import SqlVecError

# Errors -----------------------------------------------------------------------------------------


class PathError(SqlVecError):
    """An error of evaluation that `silent => true` (and `@?`, `@@`) suppress."""


def _syntax(message: str) -> SqlVecError:
    return SqlVecError(message, sqlstate="42601")


# Tokens -----------------------------------------------------------------------------------------

_KEYWORDS = {"strict", "lax", "true", "false", "null", "last", "exists", "is", "unknown",
             "starts", "with", "like_regex", "flag", "to"}
_PUNCT = ("&&", "||", "==", "!=", "<>", "<=", ">=", "**", "<", ">", "!", "(", ")", "[", "]",
          "{", "}", ".", ",", "?", "@", "+", "-", "*", "/", "%", "=")
_NUMBER = re.compile(r"(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?")
_WORD = re.compile(r"[A-Za-z_\u0080-\U0010FFFF][A-Za-z0-9_\u0080-\U0010FFFF]*")


@dataclass
class _Token:
    kind: str  # punct | num | str | word | var | end
    value: str
    after: str = ""  # the character after a word ("" at the end): what errors name


def _read_string(text: str, i: int) -> tuple[str, int]:
    """A double-quoted string starting at text[i] (JSON escapes, and `\\x` hex)."""
    out, i = [], i + 1
    while i < len(text):
        ch = text[i]
        if ch == '"':
            return "".join(out), i + 1
        if ch == "\\":
            i += 1
            if i >= len(text):
                break
            esc = text[i]
            simple = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
            if esc in simple:
                out.append(simple[esc])
            elif esc == "u":
                if text[i + 1:i + 2] == "{":
                    end = text.find("}", i)
                    if end < 0:
                        break
                    out.append(chr(int(text[i + 2:end], 16)))
                    i = end
                else:
                    code = text[i + 1:i + 5]
                    if len(code) < 4 or not re.fullmatch(r"[0-9a-fA-F]{4}", code):
                        raise _syntax("invalid Unicode escape sequence at or near "
                                      f'"\\u{code}" of jsonpath input')
                    value = int(code, 16)
                    i += 4
                    if 0xD800 <= value < 0xDC00 and text[i + 1:i + 3] == "\\u":
                        low = int(text[i + 3:i + 7], 16)
                        value = 0x10000 + ((value - 0xD800) << 10) + (low - 0xDC00)
                        i += 6
                    out.append(chr(value))
            elif esc == "x":
                out.append(chr(int(text[i + 1:i + 3], 16)))
                i += 2
            else:
                out.append(esc)
            i += 1
            continue
        out.append(ch)
        i += 1
    raise _syntax("unterminated quoted string at end of jsonpath input")


def _tokens(text: str) -> list[_Token]:
    out: list[_Token] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        if ch == '"':
            value, i = _read_string(text, i)
            out.append(_Token("str", value))
            continue
        if ch == "$":
            if text[i + 1:i + 2] == '"':
                value, i = _read_string(text, i + 1)
                out.append(_Token("var", value))
                continue
            m = _WORD.match(text, i + 1)
            if m:
                out.append(_Token("var", m.group()))
                i = m.end()
            else:
                out.append(_Token("punct", "$"))
                i += 1
            continue
        m = _NUMBER.match(text, i)
        if m and (ch.isdigit() or (ch == "." and (not out or out[-1].kind == "punct"
                                                   and out[-1].value not in (")", "]")))):
            number = m.group()
            end = m.end()
            if number.endswith(".") and end < len(text) and (text[end].isalpha() or
                                                              text[end] == "_"):
                number, end = number[:-1], end - 1  # `1.type()`: integer then accessor
            if end < len(text) and (text[end].isalpha() or text[end] == "_"):
                raise _syntax(f'trailing junk after numeric literal at or near '
                              f'"{text[i:end + 1]}" of jsonpath input')
            out.append(_Token("num", number))
            i = end
            continue
        m = _WORD.match(text, i)
        if m:
            out.append(_Token("word", m.group(), text[m.end():m.end() + 1]))
            i = m.end()
            continue
        for p in _PUNCT:
            if text.startswith(p, i):
                out.append(_Token("punct", p))
                i += len(p)
                break
        else:
            raise _syntax(f'syntax error at or near "{ch}" of jsonpath input')
    out.append(_Token("end", ""))
    return out


# The tree ---------------------------------------------------------------------------------------


@dataclass
class Node:
    """One item of a path. `kind` is PostgreSQL's item type, lower case without `jpi`:
    root, current, var, last, literal; key, anykey, anyarray, index, any, filter, method;
    and, or, not, isunknown, exists, compare (op), startswith, likeregex; add sub mul div mod
    (arithmetic), plus minus (unary). `steps` are the accessors applied to a primary."""

    kind: str
    value: object = None  # literal value, key/var name, operator, method name, regex
    args: list = field(default_factory=list)
    steps: list = field(default_factory=list)


_PRIORITY = {"or": 0, "and": 1, "compare": 2, "startswith": 2, "add": 3, "sub": 3, "mul": 4,
             "div": 4, "mod": 4, "plus": 5, "minus": 5}
_ARITH = {"+": "add", "-": "sub", "*": "mul", "/": "div", "%": "mod"}
_ARITH_SYMBOL = {v: k for k, v in _ARITH.items()}
_COMPARE = {"==", "!=", "<>", "<", ">", "<=", ">="}
_PREDICATES = {"and", "or", "not", "isunknown", "exists", "compare", "startswith",
               "likeregex"}
_METHODS = {"type", "size", "double", "ceiling", "floor", "abs", "keyvalue", "datetime"}
_UNSUPPORTED_METHODS = {"bigint", "boolean", "date", "decimal", "integer", "number", "string",
                        "time", "time_tz", "timestamp", "timestamp_tz"}


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.i = 0
        self.in_filter = 0
        self.in_subscript = 0

    def peek(self, offset: int = 0) -> _Token:
        return self.tokens[min(self.i + offset, len(self.tokens) - 1)]

    def error(self) -> SqlVecError:
        t = self.peek()
        if t.kind == "word":  # PostgreSQL's scanner has read one character past a word
            t = _Token("punct", t.after) if t.after else _Token("end", "")
        if t.kind == "end":
            return _syntax("syntax error at end of jsonpath input")
        shown = {"str": lambda v: '"' + v, "var": lambda v: "$" + v}.get(t.kind, lambda v: v)
        return _syntax(f'syntax error at or near "{shown(t.value)}" of jsonpath input')

    def accept(self, value: str, kind: str = "punct") -> bool:
        t = self.peek()
        if t.kind == kind and (t.value == value if kind == "punct" else t.value.lower() == value):
            self.i += 1
            return True
        return False

    def expect(self, value: str, kind: str = "punct") -> None:
        if not self.accept(value, kind):
            raise self.error()

    def word(self, value: str) -> bool:
        t = self.peek()
        return t.kind == "word" and t.value == value

    # Grammar

    def top(self) -> tuple[bool, Node | None]:
        lax = True
        if self.word("strict") or self.word("lax"):
            lax = self.peek().value == "lax"
            self.i += 1
        if self.peek().kind == "end":
            return lax, None
        node = self.or_()
        if self.peek().kind != "end":
            raise self.error()
        return lax, node

    def or_(self) -> Node:
        node = self.and_()
        while self.accept("||"):
            node = Node("or", args=[node, self.and_()])
        return node

    def and_(self) -> Node:
        node = self.not_()
        while self.accept("&&"):
            node = Node("and", args=[node, self.not_()])
        return node

    def not_(self) -> Node:
        if self.accept("!"):
            if self.word("exists"):
                return Node("not", args=[self.comparison()])
            self.expect("(")
            inner = self.or_()
            self.expect(")")
            return Node("not", args=[self._maybe_unknown(inner)])
        return self.comparison()

    def _maybe_unknown(self, node: Node) -> Node:
        if self.word("is"):
            self.i += 1
            if not self.word("unknown"):
                raise self.error()
            self.i += 1
            return Node("isunknown", args=[node])
        return node

    def comparison(self) -> Node:
        left = self.additive()
        t = self.peek()
        if t.kind == "punct" and t.value in _COMPARE:
            self.i += 1
            op = "!=" if t.value == "<>" else t.value
            return Node("compare", op, [left, self.additive()])
        if self.word("starts"):
            self.i += 1
            if not self.word("with"):
                raise self.error()
            self.i += 1
            t = self.peek()
            if t.kind == "str":
                self.i += 1
                right = Node("literal", t.value)
            elif t.kind == "var":
                self.i += 1
                right = Node("var", t.value)
            else:
                raise self.error()
            return Node("startswith", args=[left, right])
        if self.word("like_regex"):
            self.i += 1
            t = self.peek()
            if t.kind != "str":
                raise self.error()
            self.i += 1
            flags = ""
            if self.word("flag"):
                self.i += 1
                f = self.peek()
                if f.kind != "str":
                    raise self.error()
                self.i += 1
                flags = f.value
            return Node("likeregex", (t.value, _regex_flags(flags)), [left])
        return left

    def additive(self) -> Node:
        node = self.multiplicative()
        while self.peek().kind == "punct" and self.peek().value in ("+", "-"):
            op = _ARITH[self.peek().value]
            self.i += 1
            node = Node(op, args=[node, self.multiplicative()])
        return node

    def multiplicative(self) -> Node:
        node = self.unary()
        while self.peek().kind == "punct" and self.peek().value in ("*", "/", "%"):
            op = _ARITH[self.peek().value]
            self.i += 1
            node = Node(op, args=[node, self.unary()])
        return node

    def unary(self) -> Node:
        if self.accept("+"):
            return Node("plus", args=[self.unary()])
        if self.accept("-"):
            return Node("minus", args=[self.unary()])
        return self.accessor()

    def accessor(self) -> Node:
        node = self.primary()
        steps = []
        while True:
            if self.accept("."):
                steps.append(self.dot_step())
            elif self.peek().kind == "punct" and self.peek().value == "[":
                steps.append(self.subscript())
            elif self.peek().kind == "punct" and self.peek().value == "?":
                self.i += 1
                self.expect("(")
                self.in_filter += 1
                predicate = self.or_()
                self.in_filter -= 1
                if predicate.kind not in _PREDICATES or predicate.steps:
                    raise self.error()
                self.expect(")")
                steps.append(Node("filter", args=[predicate]))
            else:
                break
        if steps:
            if node.steps:
                node.steps.extend(steps)
            else:
                node.steps = steps
        return node

    def dot_step(self) -> Node:
        t = self.peek()
        if t.kind == "punct" and t.value == "*":
            self.i += 1
            return Node("anykey")
        if t.kind == "punct" and t.value == "**":
            self.i += 1
            low, high = 0, None
            if self.accept("{"):
                low = self.level()
                high = low
                if self.accept("to", "word"):
                    high = self.level()
                self.expect("}")
            return Node("any", (low, high))
        if t.kind == "str":
            self.i += 1
            return Node("key", t.value)
        if t.kind == "word":
            self.i += 1
            if self.peek().kind == "punct" and self.peek().value == "(":
                name = t.value
                if name in _UNSUPPORTED_METHODS:
                    self.i -= 1
                    raise SqlVecError(f"jsonpath item method .{name}() is not supported",
                                      sqlstate="0A000")
                if name not in _METHODS:
                    raise self.error()
                self.i += 1
                arg = None
                if name == "datetime" and self.peek().kind == "str":
                    arg = self.peek().value
                    self.i += 1
                self.expect(")")
                return Node("method", name, [] if arg is None else [arg])
            return Node("key", t.value)
        raise self.error()

    def level(self) -> int | None:
        t = self.peek()
        if t.kind == "word" and t.value == "last":
            self.i += 1
            return -1
        if t.kind == "num" and t.value.isdigit():
            self.i += 1
            return int(t.value)
        raise self.error()

    def subscript(self) -> Node:
        self.expect("[")
        if self.accept("*"):
            self.expect("]")
            return Node("anyarray")
        self.in_subscript += 1
        items = []
        while True:
            start = self.or_()
            end = self.or_() if self.accept("to", "word") else None
            items.append((start, end))
            if not self.accept(","):
                break
        self.in_subscript -= 1
        self.expect("]")
        return Node("index", args=items)

    def primary(self) -> Node:
        t = self.peek()
        if t.kind == "punct":
            if t.value == "$":
                self.i += 1
                return Node("root")
            if t.value == "@":
                if not self.in_filter:
                    raise _syntax("@ is not allowed in root expressions")
                self.i += 1
                return Node("current")
            if t.value == "(":
                self.i += 1
                inner = self.or_()
                self.expect(")")
                return self._maybe_unknown(inner)
            raise self.error()
        if t.kind == "var":
            self.i += 1
            return Node("var", t.value)
        if t.kind == "str":
            self.i += 1
            return Node("literal", t.value)
        if t.kind == "num":
            self.i += 1
            return Node("literal", _decimal(t.value))
        if t.kind == "word":
            word = t.value
            if word in ("true", "false"):
                self.i += 1
                return Node("literal", word == "true")
            if word == "null":
                self.i += 1
                return Node("literal", None)
            if word == "last":
                if not self.in_subscript:
                    raise _syntax("LAST is allowed only in array subscripts")
                self.i += 1
                return Node("last")
            if word == "exists":
                self.i += 1
                self.expect("(")
                inner = self.or_()
                self.expect(")")
                return Node("exists", args=[inner])
        raise self.error()


def _decimal(text: str) -> decimal.Decimal:
    value = decimal.Decimal(text)
    return value


def _regex_flags(flags: str) -> str:
    out = ""
    for ch in flags:
        if ch not in "ismxq":
            raise SqlVecError("invalid input syntax for type jsonpath",
                              sqlstate="42601",
                              detail=f'Unrecognized flag character "{ch}" in LIKE_REGEX '
                              "predicate.")
        if ch not in out:
            out += ch
    return "".join(c for c in "ismxq" if c in out)


# Printing ---------------------------------------------------------------------------------------


def _quote(s: str) -> str:
    out = ['"']
    for ch in s:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch in "\b\f\n\r\t":
            out.append({"\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}[ch])
        elif ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _number_text(value: decimal.Decimal) -> str:
    text = format(value, "f")
    return "0" if text in ("-0", "0") else text


def _print(node: Node, brackets: bool) -> str:
    kind = node.kind
    if kind in ("or", "and", "compare", "startswith", "add", "sub", "mul", "div", "mod"):
        left, right = node.args
        prio = _PRIORITY[kind]
        op = {"or": "||", "and": "&&", "startswith": "starts with"}.get(
            kind, node.value if kind == "compare" else _ARITH_SYMBOL.get(kind))
        text = (f"{_print(left, _PRIORITY.get(left.kind, 6) <= prio and not left.steps)} {op} "
                f"{_print(right, _PRIORITY.get(right.kind, 6) <= prio and not right.steps)}")
        out = f"({text})" if brackets else text
    elif kind in ("plus", "minus"):
        arg = node.args[0]
        text = ("+" if kind == "plus" else "-") + _print(
            arg, _PRIORITY.get(arg.kind, 6) <= _PRIORITY[kind] and not arg.steps)
        out = f"({text})" if brackets else text
    elif kind == "likeregex":
        pattern, flags = node.value
        arg = node.args[0]
        text = f"{_print(arg, _PRIORITY.get(arg.kind, 6) <= 2 and not arg.steps)} like_regex " \
               f"{_quote(pattern)}" + (f' flag "{flags}"' if flags else "")
        out = f"({text})" if brackets else text
    elif kind == "not":
        out = f"!({_print(node.args[0], False)})"
    elif kind == "isunknown":
        out = f"({_print(node.args[0], False)}) is unknown"
    elif kind == "exists":
        out = f"exists ({_print(node.args[0], False)})"
    elif kind == "root":
        out = "$"
    elif kind == "current":
        out = "@"
    elif kind == "last":
        out = "last"
    elif kind == "var":
        out = "$" + _quote(str(node.value))
    elif kind == "literal":
        out = _literal_text(node.value)
    else:
        raise AssertionError(kind)
    if node.steps:
        if kind not in ("root", "current", "var", "literal", "last") and not brackets and \
                _PRIORITY.get(kind, 6) < 6:
            out = f"({out})"
        out += "".join(_print_step(s) for s in node.steps)
    return out


def _literal_text(value: object) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return _quote(value)
    return _number_text(value)  # type: ignore[arg-type]


def _print_step(step: Node) -> str:
    kind = step.kind
    if kind == "key":
        return "." + _quote(step.value)  # type: ignore[arg-type]
    if kind == "anykey":
        return ".*"
    if kind == "anyarray":
        return "[*]"
    if kind == "index":
        parts = []
        for start, end in step.args:
            parts.append(_print(start, False) + ("" if end is None else " to " + _print(end, False)))
        return "[" + ",".join(parts) + "]"
    if kind == "any":
        low, high = step.value  # type: ignore[misc]
        if low == 0 and high is None:
            return ".**"

        def level(x):
            return "last" if x == -1 else str(x)
        if low == high:
            return f".**{{{level(low)}}}"
        return f".**{{{level(low)} to {'last' if high is None else level(high)}}}"
    if kind == "filter":
        return f"?({_print(step.args[0], False)})"
    if kind == "method":
        arg = _quote(step.args[0]) if step.args else ""
        return f".{step.value}({arg})"
    raise AssertionError(kind)


# Evaluation -------------------------------------------------------------------------------------


class _DateTime:
    """A datetime item (.datetime()): its SQL type and value; printed as jsonb prints it."""

    __slots__ = ("type", "value", "text")

    def __init__(self, type_: str, value: object, text: str) -> None:
        self.type, self.value, self.text = type_, value, text


_UNKNOWN = None  # three-valued logic: True, False, or None for unknown


def _type_name(item: object) -> str:
    if isinstance(item, dict):
        return "object"
    if isinstance(item, list):
        return "array"
    if isinstance(item, str):
        return "string"
    if isinstance(item, bool):
        return "boolean"
    if item is None:
        return "null"
    if isinstance(item, _DateTime):
        return {"date": "date", "time": "time without time zone",
                "timetz": "time with time zone", "timestamp": "timestamp without time zone",
                "timestamptz": "timestamp with time zone"}[item.type]
    return "number"


def _is_number(item: object) -> bool:
    return isinstance(item, (int, decimal.Decimal, float)) and not isinstance(item, bool)


def _num(item: object) -> decimal.Decimal:
    return item if isinstance(item, decimal.Decimal) else decimal.Decimal(item)  # type: ignore


_CTX = decimal.Context(prec=1000, rounding=decimal.ROUND_HALF_UP)


class _Run:
    def __init__(self, lax: bool, root: object, variables: dict) -> None:
        self.lax = lax
        self.root = root
        self.variables = variables

    # Items

    def eval(self, node: Node, current: object, last: int | None = None) -> list:
        kind = node.kind
        if kind == "root":
            items = [self.root]
        elif kind == "current":
            items = [current]
        elif kind == "literal":
            items = [node.value]
        elif kind == "last":
            items = [decimal.Decimal(last if last is not None else -1)]
        elif kind == "var":
            if node.value not in self.variables:
                raise SqlVecError(f'could not find jsonpath variable "{node.value}"',
                                  sqlstate="42704")
            items = [self.variables[node.value]]
        elif kind in ("add", "sub", "mul", "div", "mod"):
            items = [self.arith(node, current, last)]
        elif kind in ("plus", "minus"):
            items = []
            for item in self.unwrapped(self.eval(node.args[0], current, last)):
                if not _is_number(item):
                    raise PathError(f"operand of unary jsonpath operator "
                                    f"{'+' if kind == 'plus' else '-'} is not a numeric value",
                                    sqlstate="2203B")
                items.append(-_num(item) if kind == "minus" else item)
        else:  # a predicate used as a value: its boolean (or null for unknown)
            items = [self.predicate(node, current, last)]
        for step in node.steps:
            items = self.step(step, items, current, last)
        return items

    def unwrapped(self, items: list) -> list:
        if not self.lax:
            return items
        out = []
        for item in items:
            if isinstance(item, list):
                out.extend(item)
            else:
                out.append(item)
        return out

    def step(self, step: Node, items: list, current: object, last: int | None) -> list:
        kind = step.kind
        out: list = []
        if kind == "key":
            for item in (self.unwrapped(items) if self.lax else items):
                if isinstance(item, dict):
                    if step.value in item:
                        out.append(item[step.value])
                    elif not self.lax:
                        raise PathError(f'JSON object does not contain key "{step.value}"',
                                        sqlstate="2203A")
                elif not self.lax:
                    raise PathError("jsonpath member accessor can only be applied to an "
                                    "object", sqlstate="2203A")
            return out
        if kind == "anykey":
            for item in (self.unwrapped(items) if self.lax else items):
                if isinstance(item, dict):
                    out.extend(item.values())
                elif not self.lax:
                    raise PathError("jsonpath wildcard member accessor can only be applied to "
                                    "an object", sqlstate="2203C")
            return out
        if kind == "anyarray":
            for item in items:
                if isinstance(item, list):
                    out.extend(item)
                elif self.lax:
                    out.append(item)
                else:
                    raise PathError("jsonpath wildcard array accessor can only be applied to "
                                    "an array", sqlstate="22039")
            return out
        if kind == "index":
            for item in items:
                if not isinstance(item, list):
                    if not self.lax:
                        raise PathError("jsonpath array accessor can only be applied to an "
                                        "array", sqlstate="22039")
                    item = [item]
                size = len(item)
                for start, end in step.args:
                    lo = self.subscript(start, item, size)
                    hi = lo if end is None else self.subscript(end, item, size)
                    if not self.lax and (lo < 0 or hi >= size or lo > hi):
                        raise PathError("jsonpath array subscript is out of bounds",
                                        sqlstate="22033")
                    for k in range(max(lo, 0), min(hi, size - 1) + 1):
                        out.append(item[k])
            return out
        if kind == "any":
            low, high = step.value  # type: ignore[misc]
            for item in items:
                self.descend(item, 0, low, high, out)
            return out
        if kind == "filter":
            for item in (self.unwrapped(items) if self.lax else items):
                if self.predicate(step.args[0], item, last) is True:
                    out.append(item)
            return out
        if kind == "method":
            return self.method(step, items)
        raise AssertionError(kind)

    def descend(self, item: object, level: int, low: int, high: int | None, out: list) -> None:
        high_ok = high is None or high == -1 or level <= high
        if level >= low and high_ok or (low == -1 and high in (-1, None)):
            out.append(item)
        if high is not None and high != -1 and level >= high:
            return
        children = item.values() if isinstance(item, dict) else item \
            if isinstance(item, list) else ()
        for child in children:
            self.descend(child, level + 1, low, high, out)

    def subscript(self, node: Node, array: list, size: int) -> int:
        values = self.eval(node, None, size - 1)
        if len(values) != 1 or not _is_number(values[0]):
            raise PathError("jsonpath array subscript is not a single numeric value",
                            sqlstate="22033")
        value = _num(values[0])
        return int(value.to_integral_value(rounding=decimal.ROUND_DOWN))

    def method(self, step: Node, items: list) -> list:
        name = step.value
        out: list = []
        if name == "type":
            return [_type_name(item) for item in items]
        if name == "size":
            for item in items:
                if isinstance(item, list):
                    out.append(decimal.Decimal(len(item)))
                elif self.lax:
                    out.append(decimal.Decimal(1))
                else:
                    raise PathError("jsonpath item method .size() can only be applied to an "
                                    "array", sqlstate="22039")
            return out
        for item in self.unwrapped(items):
            if name in ("abs", "floor", "ceiling"):
                if not _is_number(item):
                    raise PathError(f"jsonpath item method .{name}() can only be applied to a "
                                    "numeric value", sqlstate="22036")
                n = _num(item)
                if name == "abs":
                    out.append(abs(n))
                else:
                    out.append(n.to_integral_value(
                        rounding=decimal.ROUND_FLOOR if name == "floor" else decimal.ROUND_CEILING))
            elif name == "double":
                out.append(self.double(item))
            elif name == "keyvalue":
                if not isinstance(item, dict):
                    raise PathError("jsonpath item method .keyvalue() can only be applied to an "
                                    "object", sqlstate="2203C")
                for k in sorted(item, key=lambda k: (len(k.encode()), k.encode())):
                    out.append({"key": k, "value": item[k], "id": decimal.Decimal(0)})
            elif name == "datetime":
                out.append(self.datetime(item, step.args[0] if step.args else None))
        return out

    def double(self, item: object) -> object:
        if _is_number(item):
            value = float(_num(item))
            if math.isinf(value):
                raise PathError(f'argument "{_number_text(_num(item))}" of jsonpath item '
                                "method .double() is invalid for type double precision",
                                sqlstate="22036")
            return _float_decimal(value)
        if isinstance(item, str):
            try:
                value = float(item.strip())
            except ValueError:
                value = None
            if value is None or math.isinf(value) or math.isnan(value):
                raise PathError(f'argument "{item}" of jsonpath item method .double() is '
                                "invalid for type double precision", sqlstate="22036")
            return _float_decimal(value)
        raise PathError("jsonpath item method .double() can only be applied to a string or "
                        "numeric value", sqlstate="22036")

    def datetime(self, item: object, template: str | None) -> object:
        if not isinstance(item, str):
            raise PathError("jsonpath item method .datetime() can only be applied to a string",
                            sqlstate="22036")
        if template is not None:
            raise SqlVecError(".datetime() with a template is not supported", sqlstate="0A000")
        return _parse_datetime(item)

    def arith(self, node: Node, current: object, last: int | None) -> object:
        symbol = _ARITH_SYMBOL[node.kind]
        operands = []
        for side, arg in zip(("left", "right"), node.args):
            values = self.unwrapped(self.eval(arg, current, last))
            if len(values) != 1 or not _is_number(values[0]):
                raise PathError(f"{side} operand of jsonpath operator {symbol} is not a single "
                                "numeric value", sqlstate="22038")
            operands.append(_num(values[0]))
        a, b = operands
        if node.kind in ("div", "mod") and b == 0:
            raise PathError("division by zero", sqlstate="22012")
        if node.kind == "add":
            return _CTX.add(a, b)
        if node.kind == "sub":
            return _CTX.subtract(a, b)
        if node.kind == "mul":
            return _CTX.multiply(a, b)
        if node.kind == "mod":
            return _CTX.remainder(a, b)
        return _divide(a, b)

    # Predicates: True, False or None (unknown)

    def predicate(self, node: Node, current: object, last: int | None) -> bool | None:
        kind = node.kind
        if kind == "and":
            left = self.predicate(node.args[0], current, last)
            if left is False:
                return False
            right = self.predicate(node.args[1], current, last)
            if right is False:
                return False
            return True if left is True and right is True else None
        if kind == "or":
            left = self.predicate(node.args[0], current, last)
            if left is True:
                return True
            right = self.predicate(node.args[1], current, last)
            if right is True:
                return True
            return False if left is False and right is False else None
        if kind == "not":
            value = self.predicate(node.args[0], current, last)
            return None if value is None else not value
        if kind == "isunknown":
            return self.predicate(node.args[0], current, last) is None
        if kind == "exists":
            try:
                items = self.eval(node.args[0], current, last)
            except PathError:
                return None
            return bool(items)
        if kind == "compare":
            return self.compare_all(node, current, last)
        if kind == "startswith":
            prefix = self.one_string(node.args[1], current, last)
            return self.scan(node.args[0], current, last,
                             lambda s: s.startswith(prefix) if isinstance(s, str) and
                             prefix is not None else None)
        if kind == "likeregex":
            pattern, flags = node.value  # type: ignore[misc]
            regex = _compile_regex(pattern, flags)
            return self.scan(node.args[0], current, last,
                             lambda s: regex.search(s) is not None if isinstance(s, str)
                             else None)
        # Not a predicate: PostgreSQL accepts only predicates here (a syntax error in filters);
        # as the top of a jsonb_path_match path the value itself is the result.
        raise _NotPredicate()

    def one_string(self, node: Node, current: object, last: int | None) -> str | None:
        values = self.eval(node, current, last)
        return values[0] if len(values) == 1 and isinstance(values[0], str) else None

    def scan(self, arg: Node, current: object, last: int | None, test) -> bool | None:
        try:
            items = self.unwrapped(self.eval(arg, current, last))
        except PathError:
            return None
        found, error = False, False
        for item in items:
            result = test(item)
            if result is None:
                if not self.lax:
                    return None
                error = True
            elif result:
                if self.lax:
                    return True
                found = True
        if found and not error:
            return True
        return None if error else False

    def compare_all(self, node: Node, current: object, last: int | None) -> bool | None:
        try:
            lefts = self.unwrapped(self.eval(node.args[0], current, last))
            rights = self.unwrapped(self.eval(node.args[1], current, last))
        except PathError:
            return None
        found, error = False, False
        for a in lefts:
            for b in rights:
                result = _compare(node.value, a, b)  # type: ignore[arg-type]
                if result is None:
                    if not self.lax:
                        return None
                    error = True
                elif result:
                    if self.lax:
                        return True
                    found = True
        if found:
            return True
        return None if error else False


class _NotPredicate(Exception):
    pass


def _float_decimal(value: float) -> decimal.Decimal:
    """A double as PostgreSQL's float8 → numeric gives it: 15 significant digits."""
    return decimal.Decimal(format(value, ".15g"))


def _divide(a: decimal.Decimal, b: decimal.Decimal) -> decimal.Decimal:
    """numeric division with PostgreSQL's result scale (select_div_scale: at least 16
    significant digits, counted in its base-10000 digits)."""
    def weight(x: decimal.Decimal) -> tuple[int, int]:
        if x == 0:
            return 0, 0
        w = x.copy_abs().adjusted() // 4
        return w, int(x.copy_abs().scaleb(-4 * w))
    (w1, f1), (w2, f2) = weight(a), weight(b)
    qweight = w1 - w2 - (1 if f1 <= f2 else 0)
    scale = max(16 - qweight * 4, _scale(a), _scale(b), 0)
    scale = min(scale, 1000)
    return _CTX.divide(a, b).quantize(decimal.Decimal(1).scaleb(-scale),
                                      rounding=decimal.ROUND_HALF_UP, context=_CTX)


def _scale(x: decimal.Decimal) -> int:
    return max(0, -x.as_tuple().exponent)  # type: ignore[operator]


def _compare(op: str, a: object, b: object) -> bool | None:
    ta, tb = _type_name(a), _type_name(b)
    if isinstance(a, _DateTime) or isinstance(b, _DateTime):
        if not (isinstance(a, _DateTime) and isinstance(b, _DateTime)):
            return None if a is not None and b is not None else op == "!="
        try:
            cmp = (a.value > b.value) - (a.value < b.value)  # type: ignore[operator]
        except TypeError:
            return None
        return _cmp_result(op, cmp)
    if ta != tb:
        if a is None or b is None:
            return op == "!="
        return None
    if ta in ("object", "array"):
        return None
    if a is None:
        cmp = 0
    elif ta == "number":
        x, y = _num(a), _num(b)
        cmp = (x > y) - (x < y)
    elif ta == "boolean":
        cmp = (a > b) - (a < b)  # type: ignore[operator]
    else:  # strings: by code points
        cmp = (a > b) - (a < b)  # type: ignore[operator]
    return _cmp_result(op, cmp)


def _cmp_result(op: str, cmp: int) -> bool:
    return {"==": cmp == 0, "!=": cmp != 0, "<": cmp < 0, "<=": cmp <= 0, ">": cmp > 0,
            ">=": cmp >= 0}[op]


@lru_cache(maxsize=256)
def _compile_regex(pattern: str, flags: str) -> re.Pattern:
    options = 0
    if "i" in flags:
        options |= re.IGNORECASE
    if "s" in flags:
        options |= re.DOTALL
    if "m" in flags:
        options |= re.MULTILINE
    if "x" in flags:
        options |= re.VERBOSE
    if "q" in flags:
        pattern = re.escape(pattern)
    try:
        return re.compile(pattern, options)
    except re.error as error:
        raise SqlVecError(f"invalid regular expression: {error}", sqlstate="2201B") from None


_DATETIME_FORMATS = (
    ("timestamptz", "%Y-%m-%dT%H:%M:%S%z"), ("timestamptz", "%Y-%m-%d %H:%M:%S%z"),
    ("timestamp", "%Y-%m-%dT%H:%M:%S"), ("timestamp", "%Y-%m-%d %H:%M:%S"),
    ("date", "%Y-%m-%d"), ("timetz", "%H:%M:%S%z"), ("time", "%H:%M:%S"),
)


def _parse_datetime(text: str) -> _DateTime:
    """.datetime() without a template: the ISO forms PostgreSQL tries, in its order."""
    s = text.strip()
    base, frac = s, ""
    m = re.match(r"^(.*\d{2}:\d{2}:\d{2})(\.\d+)(.*)$", s)
    if m:
        base, frac = m.group(1) + m.group(3), m.group(2)
    tz = re.search(r"([+-]\d{2})(:?(\d{2}))?$", base)
    if tz and ":" in base and not re.search(r"[+-]\d{2}:\d{2}:\d{2}$", base):
        base = base[:tz.start()] + tz.group(1) + (tz.group(3) or "00")
    for kind, fmt in _DATETIME_FORMATS:
        try:
            value = dt.datetime.strptime(base, fmt)
        except ValueError:
            continue
        if frac:
            value = value.replace(microsecond=int((frac[1:] + "000000")[:6]))
        if kind == "date":
            return _DateTime("date", value.date(), value.date().isoformat())
        if kind == "time":
            return _DateTime("time", value.time(), value.time().isoformat())
        if kind == "timetz":
            return _DateTime("timetz", value.timetz(), value.strftime("%H:%M:%S") + frac +
                             _offset(value))
        if kind == "timestamp":
            return _DateTime("timestamp", value, value.isoformat())
        return _DateTime("timestamptz", value, value.strftime("%Y-%m-%dT%H:%M:%S") + frac +
                         _offset(value))
    raise PathError(f'datetime format is not recognized: "{text}"', sqlstate="22007",
                    hint="Use a datetime template argument to specify the input data format.")


def _offset(value: dt.datetime) -> str:
    delta = value.utcoffset() or dt.timedelta(0)
    minutes = int(delta.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    minutes = abs(minutes)
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


# The public face --------------------------------------------------------------------------------


@dataclass
class Path:
    """A parsed jsonpath: its mode and expression (None: the empty path `strict`/`lax`)."""

    lax: bool
    expression: Node | None

    def text(self) -> str:
        """PostgreSQL's text form of the path (jsonpath_out)."""
        body = "" if self.expression is None else _print(self.expression, True)
        if not self.lax:
            return "strict " + body if body else "strict"
        return body

    def run(self, document: object, variables: dict | None = None) -> list:
        """The items the path gives over `document` (PathError on an error that silent mode
        suppresses)."""
        if self.expression is None:
            return []
        run = _Run(self.lax, document, variables or {})
        try:
            return run.eval(self.expression, document)
        except _NotPredicate:
            raise AssertionError("not a predicate") from None

    def exists(self, document: object, variables: dict | None = None) -> bool | None:
        """jsonb_path_exists: whether the path gives any item (None: unknown, from a
        predicate path that is unknown)."""
        return bool(self.run(document, variables))

    def match(self, document: object, variables: dict | None = None) -> bool | None:
        """jsonb_path_match: the path's single boolean (None for a JSON null)."""
        items = self.run(document, variables)
        if len(items) == 1 and (items[0] is None or isinstance(items[0], bool)):
            return items[0]
        raise PathError("single boolean result is expected", sqlstate="22038")


@lru_cache(maxsize=1024)
def parse(text: str) -> Path:
    """A jsonpath from its text (cached: a filter's path is parsed once per statement)."""
    if not text.strip():
        raise SqlVecError(f'invalid input syntax for type jsonpath: "{text}"',
                          sqlstate="22P02")
    parser = _Parser(text)
    lax, node = parser.top()
    return Path(lax, node)


def item_json(item: object) -> object:
    """An item as a JSON value for output (datetimes as their ISO strings)."""
    if isinstance(item, _DateTime):
        return item.text
    if isinstance(item, dict):
        return {k: item_json(v) for k, v in item.items()}
    if isinstance(item, list):
        return [item_json(v) for v in item]
    return item
