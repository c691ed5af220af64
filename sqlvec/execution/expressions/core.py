"""The expression compiler's core: `Compiler`, the `Frame` its compiled values read, the
statement's `CompileEnv`, and `HANDLERS`, the dispatch table keyed by sqlglot expression class.

`Compiler.compile(expression)` returns a `Value`: a function of a `Frame` (the input rows as an
Arrow table) plus the result's SQL type. The handlers live in the family modules of this package
(leaves, casts, numeric, temporal, vector, predicates, conditionals, arrays, subqueries, calls,
json), each adding its entries to `HANDLERS` when imported; the package imports them all. An
expression class with no handler is refused with 0A000 naming it, never evaluated wrongly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa
from sqlglot import exp

from sqlvec.errors import DatatypeMismatch, FeatureNotSupported, SqlVecError
from sqlvec.execution import values as V
from sqlvec.execution.expressions.scalars import cast_form, constant_form, scalar_type
from sqlvec.execution.values import BOOL, FLOAT8, INT8, TEXT, Datum, Value
from sqlvec.sql import dialect as d
from sqlvec.sql.binder import Scope
from sqlvec.types import REG_TYPES, SqlType


@dataclass
class Frame:
    """Input rows of an expression, and the outer row when inside a correlated subquery."""

    table: pa.Table
    ctx: object  # execution.context.ExecContext
    outer: Frame | None = None

    @property
    def n(self) -> int:
        return self.table.num_rows


@dataclass
class CompileEnv:
    """Statement-wide compile state: parameter types (given or inferred) and services."""

    param_types: dict[int, SqlType] = field(default_factory=dict)
    build_subplan: Callable | None = None  # (plan, scope) -> operator
    functions: dict | None = None
    correlated: bool = False  # set when an outer reference is compiled
    subplans: int = 0  # subqueries compiled so far (CASE: does a branch hold one?)
    outer_refs: list = field(default_factory=list)  # (Compiler read, column index) per outer ref

    def param_type(self, index: int) -> SqlType | None:
        """The type parameter $index has been given or inferred so far, or None."""
        return self.param_types.get(index)

    def infer_param(self, index: int, t: SqlType) -> None:
        """Fix the type of $index from its first typed use, as PostgreSQL infers parameter types
        from context."""
        if t.name != "unknown" and index not in self.param_types:
            self.param_types[index] = t


CHAR_PEERS = frozenset({"bpchar", "text", "varchar", "name", "unknown"})
BPCHAR = SqlType("bpchar")


def compares_as_char(ta: SqlType, tb: SqlType) -> bool:
    """Whether a comparison involves char(n) with another character type (or char(n) of
    another length): then trailing spaces of the char side do not count."""
    return "bpchar" in (ta.name, tb.name) and ta.name in CHAR_PEERS and tb.name in CHAR_PEERS


def _fits_char(char: SqlType, literal: Value) -> bool:
    """Whether an untyped literal compared with char(n) fits in n characters but for trailing
    spaces: then padded to n it compares as both sides trimmed would (and a key lookup or a
    scan compares the stored values as they are)."""
    n = char.char_length if char.name == "bpchar" else None
    return n is not None and literal.type.name == "unknown" and literal.text is not None \
        and len(literal.text.rstrip(" ")) <= n


class Compiler:
    """Compiles expressions against one scope (the input relation's fields and types).

    The expressions are bound (plan/bind.py): those of a plan, and those bound as a plan's
    are (a write's SET and RETURNING, DEFAULTs, CHECK conditions, ALTER COLUMN ... TYPE ...
    USING). Their column references carry their positions, which the compiler reads; it
    never looks a name up, and a reference without a position is an error (XX000)."""

    def __init__(self, scope: Scope, types: list[SqlType], env: CompileEnv,
                 outer: Compiler | None = None) -> None:
        self.scope = scope
        self.types = types
        self.env = env
        self.outer = outer
        self._compiled: dict[int, Value] = {}  # id(node) -> its Value, while a chain compiles

    def compile(self, e: exp.Expression) -> Value:
        """Compile an expression to a Value (a function of the frame and its type), folding
        constants and reusing what this compiler already compiled."""
        if self._compiled:
            done = self._compiled.get(id(e))
            if done is not None:
                return done
        if type(e) in _CHAINS and type(e.this) in _CHAINS:
            return self._chain(e)
        return self._compile(e)

    def _chain(self, e: exp.Expression) -> Value:
        """A left-deep chain (`a + b + c ...`, `p OR q OR ...`, `x || y || ...`), compiled and
        evaluated in a loop: a 10,000-term chain costs no recursion, here or at run time.

        Each operator is compiled by its own handler with its left operand standing for the
        value so far (`_hole`), so types, casts and errors are those of the nested form."""
        spine = []
        node = e
        while type(node) in _CHAINS and id(node) not in self._compiled:
            spine.append(node)
            node = node.this
        first = self._compile(spine.pop())  # the innermost operator: its operands are leaves
        acc, steps = first, []
        for node in reversed(spine):
            self._compiled[id(node.this)] = _hole(acc)
            try:
                acc = self._compile(node)
            finally:
                del self._compiled[id(node.this)]
            steps.append(acc)

        def fn(f: Frame) -> Datum:
            x = first(f)
            for step in steps:
                x = step(_HoleFrame(f.table, f.ctx, f.outer, x))
            return x

        # (its Python form nests a call per step: kept for short chains only)
        value = Value(fn, acc.type, acc.const, py=acc.py if len(steps) <= _PY_CHAIN else None)
        return folded(value) if value.const else value

    def _compile(self, e: exp.Expression) -> Value:
        handler = HANDLERS.get(type(e))
        if handler is None:
            for cls in type(e).__mro__:
                handler = HANDLERS.get(cls)
                if handler is not None:
                    break
        if handler is None:
            # Registered extensions (execution/catalog_functions.py): operators and forms
            # catalog queries use, keyed by expression class name.
            extra = (self.env.functions or {}).get(f"expr:{type(e).__name__}")
            if extra is not None:
                return extra(self, e)
            raise FeatureNotSupported(f"{describe(e)} is not supported")
        try:
            value = handler(self, e)
        except SqlVecError as error:
            if error.position is None and error.sqlstate == "42883" and \
                    error.message.startswith("operator does not exist"):
                error.position = operator_position(e)
            raise
        return folded(value) if value.const else value

    # Typing helpers -----------------------------------------------------------------------------

    def compile_operator(self, cls: type[exp.Binary], a: Value, b: Value) -> Value:
        """`a <op> b` for operands compiled already: how a function that implements an
        operator (pgvector's `vector_add`, `halfvec_lt`, ...) compiles, by the operator's own
        handler."""
        left, right = exp.Null(), exp.Null()
        self._compiled[id(left)], self._compiled[id(right)] = a, b
        try:
            return self._compile(cls(this=left, expression=right))
        finally:
            del self._compiled[id(left)], self._compiled[id(right)]

    def coerce(self, value: Value, target: SqlType) -> Value:
        """`value` as `target` (implicit cast: unknown literals, numeric widening, params)."""
        if value.type == target or target.name == "unknown":
            return value
        if value.type.name == "unknown" and value.text is not None:
            try:
                scalar = V.text_of_literal_type(value.text, target)
            except SqlVecError as error:
                if error.position is None and _input_error(value.text, target):
                    error.position = value.position
                raise
            return Value(lambda f: scalar, target, const=True,
                         py=constant_form(scalar.as_py(), target) if scalar_type(target)
                         else None)
        src = value.type if value.type.name != "unknown" else TEXT
        return Value(lambda f: V.cast(value(f), src, target, f.n), target, value.const,
                     py=cast_form(value.py, src, target))

    def char_as_text(self, value: Value) -> Value:
        """A string operand of a comparison with char(n): char(n) and unknown literals (which
        become char, as varchar does: PostgreSQL picks bpchar's operators for them) lose their
        trailing spaces, as bpchar comparisons ignore them and the bpchar -> text cast drops
        them; text and name keep theirs."""
        if value.type.name in ("unknown", "varchar"):
            value = self.coerce(value, BPCHAR)
        return self.coerce(value, TEXT)

    def unify(self, a: Value, b: Value, symbol: str = "=") -> tuple[Value, Value, SqlType]:
        """Bring two operands to one type, as PostgreSQL resolves binary operators (`symbol`
        names the operator in the 42883 error when there is none)."""
        ta, tb = a.type, b.type
        if ta == tb:
            return a, b, ta
        if compares_as_char(ta, tb) and not (_fits_char(ta, b) or _fits_char(tb, a)):
            return self.char_as_text(a), self.char_as_text(b), TEXT
        if ta.name == "unknown":
            return self.coerce(a, tb if tb.name != "unknown" else TEXT), \
                self.coerce(b, tb if tb.name != "unknown" else TEXT), tb if tb.name != "unknown" else TEXT
        if tb.name == "unknown":
            return a, self.coerce(b, ta), ta
        if V.is_numeric(ta) and V.is_numeric(tb):
            t = V.common_numeric(ta, tb)
            if t.name == "float4" and ta.name != tb.name:
                t = FLOAT8  # PostgreSQL's operators: real with any other number is float8
            if t.name == "numeric":
                # Exact operands keep their scales (integers become scale-0 decimals).
                return self.coerce(a, V.as_numeric(ta)), self.coerce(b, V.as_numeric(tb)), t
            return self.coerce(a, t), self.coerce(b, t), t
        if V.is_string(ta) and V.is_string(tb):
            return a, b, TEXT
        if ta.name == tb.name:
            return a, b, SqlType(ta.name)
        if {ta.name, tb.name} <= {"date", "timestamp", "timestamptz"}:
            t = SqlType("timestamptz") if "timestamptz" in (ta.name, tb.name) else SqlType("timestamp")
            return self.coerce(a, t), self.coerce(b, t), t
        if ta.name == "vector" and tb.is_array or tb.name == "vector" and ta.is_array:
            t = ta if ta.name == "vector" else tb
            return self.coerce(a, t), self.coerce(b, t), t
        if {ta.name, tb.name} == {"vector", "halfvec"}:  # pgvector's implicit vector -> halfvec
            t = SqlType("halfvec")
            return self.coerce(a, t), self.coerce(b, t), t
        if "sparsevec" in (ta.name, tb.name) and (ta.is_vector or tb.is_vector):
            t = SqlType("sparsevec")  # pgvector's implicit vector/halfvec -> sparsevec
            return self.coerce(a, t), self.coerce(b, t), t
        if {ta.name, tb.name} & {"oid", *REG_TYPES} and \
                (V.is_numeric(ta) or V.is_numeric(tb)):
            return self.coerce(a, INT8), self.coerce(b, INT8), INT8
        if "xid" in (ta.name, tb.name) and (ta.name in V.INT_DIGITS or tb.name in V.INT_DIGITS):
            # `xmin = 42` (PostgreSQL's xideqint4): xids are stored as int8 already.
            return _as_int8(self, a), _as_int8(self, b), INT8
        raise SqlVecError(f"operator does not exist: {ta.format()} {symbol} {tb.format()}",
                          sqlstate="42883", hint=NO_OPERATOR_HINT)

    def condition(self, e: exp.Expression, clause: str) -> Value:
        """A boolean condition (WHERE, ON, AND, CASE WHEN...): PostgreSQL casts nothing but
        untyped literals and parameters to boolean here (42804 otherwise)."""
        v = self.compile_as(e, BOOL) if isinstance(e, exp.Parameter) else self.compile(e)
        if v.type.name == "unknown":
            return self.coerce(v, BOOL)
        if v.type.name != "bool":
            raise DatatypeMismatch(
                f"argument of {clause} must be type boolean, not type {v.type.format()}")
        return v

    def compile_as(self, e: exp.Expression, target: SqlType) -> Value:
        """Compile for a known target type: a parameter takes that type, and the result is coerced
        to it."""
        if isinstance(e, exp.Parameter):
            self.env.infer_param(param_index(e), target)
        value = self.coerce(self.compile(e), target)
        return folded(value) if value.const else value


# Binary operators whose left-deep chains `Compiler._chain` compiles as a loop.
_CHAINS = frozenset({exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Mod, exp.DPipe, exp.And, exp.Or})
_PY_CHAIN = 32  # steps of a chain whose Python form is kept


@dataclass
class _HoleFrame(Frame):
    """A frame that also carries the value of a chain so far (the left operand of a step)."""

    hole: Datum = None


def _hole(acc: Value) -> Value:
    """The left operand of a chain step: the value so far, read from the frame. Evaluated
    outside the chain (a constant folded while compiling), it is `acc` itself."""

    def fn(f: Frame) -> Datum:
        return f.hole if isinstance(f, _HoleFrame) else acc(f)

    return Value(fn, acc.type, acc.const, acc.text, acc.position, py=acc.py)


def _input_error(text: str, target: SqlType) -> bool:
    """Whether reading `text` as `target` fails already in the type's input function, not in
    applying its modifier (`vector(3)`, `varchar(2)`, `numeric(3,1)`): PostgreSQL positions
    the former at the constant and not the latter, a cast it applies after."""
    if target.typmod < 0:
        return True
    try:
        V.text_of_literal_type(text, SqlType(target.name))
    except SqlVecError:
        return True
    return False


def _as_int8(c: Compiler, v: Value) -> Value:
    return Value(v.fn, INT8, v.const) if v.type.name == "xid" else c.coerce(v, INT8)


def folded(value: Value) -> Value:
    """A constant expression evaluated once, on first use (it reads neither rows nor params)."""
    cache: list = []

    def fn(frame: Frame) -> Datum:
        if not cache:
            cache.append(value.fn(frame))
        return cache[0]

    return Value(fn, value.type, True, value.text, value.position, py=value.py)


# The dispatch table ------------------------------------------------------------------------------

Handler = Callable[[Compiler, exp.Expression], Value]

# sqlglot expression class -> its handler; filled by the family modules of this package.
HANDLERS: dict[type, Handler] = {}


# Helpers of every family -------------------------------------------------------------------------


def operator_position(e: exp.Expression) -> int | None:
    """The 1-based position of an operator in the statement text (recorded by the parser),
    where PostgreSQL points an error about the operator itself, or None."""
    start = e.meta.get("operator_start") if e._meta else None
    return None if start is None else start + 1


def param_index(e: exp.Parameter) -> int:
    """The number n of a parameter `$n`."""
    return int(e.this.this if isinstance(e.this, exp.Literal) else e.name)


def operands(c: Compiler, e: exp.Binary) -> tuple[Value, Value]:
    """Both operands of a binary operator, a parameter typed by the other side."""
    a = c.compile(e.this)
    b = c.compile(e.expression)
    if a.type.name == "unknown" and isinstance(e.this, exp.Parameter) and b.type.name != "unknown":
        c.env.infer_param(param_index(e.this), b.type)
        a = c.compile(e.this)
    if b.type.name == "unknown" and isinstance(e.expression, exp.Parameter) and a.type.name != "unknown":
        c.env.infer_param(param_index(e.expression), a.type)
        b = c.compile(e.expression)
    return a, b


# PostgreSQL's hint for an operator with no match for its argument types.
NO_OPERATOR_HINT = ("No operator matches the given name and argument types. You might need to "
                    "add explicit type casts.")

# Operator names (pyarrow.compute's) and the symbols error messages show.
SYMBOLS = {"add": "+", "subtract": "-", "multiply": "*", "divide": "/", "mod": "%", "power": "^"}


def describe(e: exp.Expression) -> str:
    """An expression as error messages name it: its SQL when short, else its class."""
    try:
        text = d.to_sql(e)
    except Exception:  # pragma: no cover - generator gaps
        text = type(e).__name__
    return text if len(text) < 60 else type(e).__name__


ONE_ROW = pa.table({"_": [None]})


def constant(value: Value, ctx) -> Datum:
    """Evaluate a constant expression once."""
    return value(Frame(ONE_ROW, ctx))
