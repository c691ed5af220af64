"""The function catalog: one declaration per SQL function, everything else derived from it.

A declaration (`Function`) gives a function's names, its signatures as PostgreSQL's pg_proc
shows them (argument and result types, polymorphic and variadic ones included), its kind
(scalar, aggregate, window, set-returning), volatility and strictness, and its implementation:
the kernel the executor compiles a call with. Declarations sit beside their kernels in
`sqlvec/execution/` as decorators:

    @scalar("lower", "text -> text")
    def _lower(c, args, e): ...

    scalar("ceil ceiling", "float8 -> float8", "numeric -> numeric")(_round_like("ceil"))

Importing `sqlvec.execution.builtins` loads every declaration (it calls `mark_loaded`). From
the declarations come the executor's dispatch (`lookup`), the planner's questions (is this call
an aggregate, a window function, set-returning; the columns of a record-returning function:
`kind_of`, `lookup`), and the `pg_proc` rows (`proc_rows`), hence psql's `\\df`, `regproc`,
`pg_get_function_arguments` and friends. The sqlglot classes some calls parse into
(`substring(s FROM 2)`, `EXTRACT(...)`, the vector forms) are mapped to these names in one
table beside the dialect, `sqlvec/sql/calls.py`.

Signatures are written in pg_type names, as PostgreSQL prints them:

    "text, int4 -> text"                  two arguments
    "-> timestamptz"                      none
    "text, variadic any -> text"          VARIADIC "any" (the last argument)
    "anyarray -> setof anyelement"        set-returning, polymorphic
    "year int4, month int4 -> date"       named arguments (proargnames)
    "pid int4, timeout int8 = 0 -> bool"  a default (pronargdefaults)
    "-> setof record(word text, n int4)"  OUT parameters of a record result
    "-> setof record(relid regclass)"     one OUT parameter: the result is its type, as
                                          PostgreSQL declares it
    "anyelement -> text [stable]"         this overload's volatility (or strictness:
                                          [not strict]) where it differs from the function's

Signatures over pgvector's types are declared with `extension="vector"`: their pg_proc rows live
in the extension's schema (public), in language C, as pgvector installs them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache

from sqlvec.catalog.catalog import INFORMATION_SCHEMA_OID, PG_CATALOG_OID, PUBLIC_OID
from sqlvec.catalog.objects import EXTRA_TYPES, format_type
from sqlvec.types import TYPES_BY_NAME

# OIDs of the pg_proc rows: built-in functions from here, pgvector's from VECTOR_FIRST_OID
# (both below FIRST_OID, where user objects start; PostgreSQL's own below 14000 are not used).
BUILTIN_FIRST_OID = 14001
VECTOR_FIRST_OID = 15001
INTERNAL_LANGUAGE = 12
C_LANGUAGE = 13
_SCHEMAS = {"pg_catalog": PG_CATALOG_OID, "information_schema": INFORMATION_SCHEMA_OID}


class Kind(Enum):
    """What a call of the function is, for the planner and for pg_proc.prokind."""

    SCALAR = "f"
    AGGREGATE = "a"
    WINDOW = "w"
    SET_RETURNING = "s"  # prokind 'f' with proretset

    @property
    def prokind(self) -> str:
        return "f" if self is Kind.SET_RETURNING else self.value


@dataclass(frozen=True)
class Signature:
    """One overload as pg_proc stores it."""

    args: tuple[str, ...]
    returns: str
    setof: bool = False
    names: tuple[str, ...] = ()  # argument names; "" where unnamed
    defaults: tuple[str, ...] = ()  # default expressions of the trailing arguments
    variadic: bool = False  # the last argument is VARIADIC
    out: tuple[tuple[str, str], ...] = ()  # OUT parameters (name, type) of a record result
    extension: str | None = None
    volatility: str | None = None  # this overload's, where it differs from the function's
    strict: bool | None = None

    def text(self) -> str:
        """The signature in declaration syntax (for messages and tests)."""
        args = ", ".join(("variadic " if self.variadic and i == len(self.args) - 1 else "")
                         + a for i, a in enumerate(self.args))
        ret = ("setof " if self.setof else "") + self.returns
        if self.out:
            ret += "(" + ", ".join(f"{n} {t}" for n, t in self.out) + ")"
        return f"{args} -> {ret}".strip()


_ARG = re.compile(r"(?:(variadic)\s+)?(?:([a-z_][a-z0-9_]*)\s+)?([a-z_][a-z0-9_]*(?:\[\])?)")


def _type_name(text: str) -> str:
    """`int4[]` → `_int4`; every name must be a pg_type row."""
    name = "_" + text[:-2] if text.endswith("[]") else text
    if type_oid(name) == 0:
        raise ValueError(f"unknown type {text!r} in a function signature")
    return name


_MODIFIERS = {"immutable": ("volatility", "i"), "stable": ("volatility", "s"),
              "volatile": ("volatility", "v"), "strict": ("strict", True),
              "not strict": ("strict", False)}


def parse_signature(text: str, extension: str | None = None) -> Signature:
    """A signature in the syntax of the module docstring."""
    options: dict = {}
    m = re.search(r"\[\s*([a-z][^\]]*)\]\s*$", text)
    if m:
        text = text[:m.start()]
        for word in (w.strip().lower() for w in m.group(1).split(",")):
            if word not in _MODIFIERS:
                raise ValueError(f"unknown modifier {word!r} in {text!r}")
            key, value = _MODIFIERS[word]
            options[key] = value
    params, arrow, result = text.partition("->")
    if not arrow:
        raise ValueError(f"signature {text!r} has no '->'")
    args, names, defaults, variadic = [], [], [], False
    for part in (p.strip() for p in params.split(",") if p.strip()):
        declared, eq, default = part.partition("=")
        m = _ARG.fullmatch(declared.strip().lower())
        if m is None:
            raise ValueError(f"cannot read argument {part!r} of {text!r}")
        if m.group(1):
            variadic = True
        names.append(m.group(2) or "")
        args.append(_type_name(m.group(3)))
        if eq:
            defaults.append(default.strip())
        elif defaults:
            raise ValueError(f"argument {part!r} of {text!r} needs a default after one")
    result = result.strip().lower()
    setof = result.startswith("setof ")
    if setof:
        result = result[len("setof "):].strip()
    out: list[tuple[str, str]] = []
    m = re.fullmatch(r"record\s*\((.*)\)", result)
    if m:
        result = "record"
        for column in m.group(1).split(","):
            name, _, type_ = column.strip().partition(" ")
            out.append((name, _type_name(type_.strip())))
        if len(out) == 1:
            result = out[0][1]
    return Signature(tuple(args), _type_name(result), setof, tuple(names) if any(names) else (),
                     tuple(defaults), variadic, tuple(out), extension, **options)


@dataclass(frozen=True)
class Function:
    """A declared function: what the executor, the planner and pg_proc know of it.

    The kernel's shape depends on the kind (sqlvec/execution/): scalar `fn(compiler, args,
    call) -> Value`; aggregate `fn(compiler, name, args) -> AggregateSpec` (aggregates.py);
    window `fn(compiler, name, args) -> (kernel name, values, type, offset)` (windows.py);
    set-returning `fn(compiler, args) -> (Value of one list per row, element type)`, with
    `table(compiler, args) -> (producer, column types)` as its FROM form when it has its own.
    """

    names: tuple[str, ...]
    kind: Kind
    signatures: tuple[Signature, ...]
    kernel: Callable
    volatility: str = "i"  # i(mmutable) | s(table) | v(olatile)
    strict: bool = True
    # A keyword form of SQL (current_date, coalesce): callable, but PostgreSQL has no pg_proc
    # row for it, so neither does sqlvec.
    keyword: bool = False
    # A set-returning function's form in FROM (default: its select-list kernel, one row in).
    table: Callable | None = None
    # An aggregate's form under OVER (None: not usable as a window function here).
    window: Callable | None = None
    schema: str = "pg_catalog"  # of its pg_proc rows (pgvector's signatures: the extension's)

    @property
    def name(self) -> str:
        return self.names[0]

    @property
    def columns(self) -> tuple[str, ...]:
        """The output column names of a function returning records (its OUT parameters)."""
        for sig in self.signatures:
            if sig.out:
                return tuple(n for n, _ in sig.out)
        return ()


_FUNCTIONS: dict[str, Function] = {}
_loaded = False


def declare(fn: Function) -> Function:
    """Add `fn` under each of its names (a name is declared once)."""
    if fn.volatility not in ("i", "s", "v"):
        raise ValueError(f"volatility of {fn.name} must be i, s or v")
    if not fn.signatures and not fn.keyword:
        raise ValueError(f"{fn.name} needs at least one signature")
    for name in fn.names:
        if name in _FUNCTIONS:
            raise ValueError(f"function {name} is declared twice")
        _FUNCTIONS[name] = fn
    for cached in (proc_rows, procs_by_oid, proc_oids):
        cached.cache_clear()
    return fn


def _declarer(kind: Kind):
    def declarer(names: str, *signatures: str | Signature, volatility: str = "i",
                 strict: bool = True, keyword: bool = False, extension: str | None = None,
                 table: Callable | None = None, window: Callable | None = None,
                 schema: str = "pg_catalog"):
        sigs = tuple(s if isinstance(s, Signature) else parse_signature(s, extension)
                     for s in signatures)

        def register(kernel: Callable) -> Callable:
            declare(Function(tuple(names.split()), kind, sigs, kernel, volatility, strict,
                             keyword, table, window, schema))
            return kernel
        return register
    declarer.__doc__ = f"Declare a {kind.name.lower().replace('_', '-')} function: " \
                       "`@decorator(names, *signatures, ...)` on its kernel."
    return declarer


scalar = _declarer(Kind.SCALAR)
aggregate = _declarer(Kind.AGGREGATE)
window = _declarer(Kind.WINDOW)
set_returning = _declarer(Kind.SET_RETURNING)


def sig(text: str, extension: str | None = None) -> Signature:
    """One signature with options of its own (an extension's overload of a built-in name)."""
    return parse_signature(text, extension)


def mark_loaded() -> None:
    """Called once every declaring module has been imported (sqlvec/execution/builtins.py)."""
    global _loaded
    _loaded = True


def _require_loaded() -> None:
    if not _loaded:
        raise RuntimeError("function declarations are not loaded: import "
                           "sqlvec.execution.builtins first")


def lookup(name: str) -> Function | None:
    """The declaration of `name` (lower case), or None."""
    _require_loaded()
    return _FUNCTIONS.get(name)


def kind_of(name: str) -> Kind | None:
    """Whether a function name is a scalar, aggregate or window function (or None if unknown), which
    decides how a call is planned."""
    fn = lookup(name)
    return None if fn is None else fn.kind


def functions() -> Iterator[Function]:
    """Every declaration once."""
    _require_loaded()
    seen: set[int] = set()
    for fn in _FUNCTIONS.values():
        if id(fn) not in seen:
            seen.add(id(fn))
            yield fn


def names() -> Iterable[str]:
    """Every callable name."""
    _require_loaded()
    return _FUNCTIONS.keys()


# pg_proc --------------------------------------------------------------------------------------------

def type_oid(name: str) -> int:
    """The OID of a pg_type name (`_x` for arrays), 0 if there is no such row."""
    info = TYPES_BY_NAME.get(name)
    if info is not None:
        return info.oid
    base = name[1:] if name.startswith("_") else name
    for extra in EXTRA_TYPES:
        if extra.typname == base:
            return extra.array_oid if name.startswith("_") else extra.oid
    return 0


@dataclass(frozen=True)
class ProcRow:
    """One pg_proc row."""

    oid: int
    name: str
    namespace: int
    rettype: int
    argtypes: tuple[int, ...]
    kind: str = "f"  # f | a | w
    retset: bool = False
    language: int = INTERNAL_LANGUAGE
    strict: bool = True
    volatile: str = "i"
    variadic: int = 0  # provariadic: the element type of a VARIADIC argument
    argnames: tuple[str, ...] = ()  # of all arguments (IN then OUT); empty when none is named
    argdefaults: tuple[str, ...] = ()
    allargtypes: tuple[int, ...] = ()  # IN then OUT, only when there are OUT parameters
    argmodes: tuple[str, ...] = ()  # i | o | v per argument of allargtypes
    source: str = ""  # prosrc

    def arguments(self, identity: bool = False) -> str:
        """pg_get_function_arguments: `VARIADIC "any"`, `OUT x integer`, `timeout bigint
        DEFAULT 0`; pg_get_function_identity_arguments (`identity`) leaves out the defaults."""
        types = self.allargtypes or self.argtypes
        modes = self.argmodes or tuple("v" if self.variadic and i == len(types) - 1 else "i"
                                       for i in range(len(types)))
        first_default = len(self.argtypes) - len(self.argdefaults)
        parts = []
        for i, (t, mode) in enumerate(zip(types, modes)):
            words = {"o": ["OUT"], "v": ["VARIADIC"]}.get(mode, [])
            if i < len(self.argnames) and self.argnames[i]:
                words.append(self.argnames[i])
            words.append(format_type(t, -1))
            if not identity and mode != "o" and i >= first_default and self.argdefaults:
                words.append(f"DEFAULT {self.argdefaults[i - first_default]}")
            parts.append(" ".join(words))
        return ", ".join(parts)

    def result(self) -> str:
        """pg_get_function_result: `SETOF integer`, `record`, `double precision`."""
        text = format_type(self.rettype, -1)
        return f"SETOF {text}" if self.retset else text


def _proc_row(oid: int, name: str, fn: Function, s: Signature) -> ProcRow:
    extension = s.extension is not None
    variadic = type_oid(s.args[-1]) if s.variadic else 0
    if variadic and s.args[-1].startswith("_"):
        variadic = type_oid(s.args[-1][1:])
    out_types = tuple(type_oid(t) for _, t in s.out)
    in_types = tuple(type_oid(a) for a in s.args)
    names = s.names + ("",) * (len(s.args) - len(s.names)) if s.names else ()
    modes: tuple[str, ...] = ()
    if s.out or s.variadic:  # proallargtypes and proargmodes, as PostgreSQL fills them
        if names:
            names += tuple(n for n, _ in s.out)
        elif s.out:
            names = ("",) * len(s.args) + tuple(n for n, _ in s.out)
        modes = tuple("v" if s.variadic and i == len(s.args) - 1 else "i"
                      for i in range(len(s.args))) + ("o",) * len(s.out)
    namespace = PUBLIC_OID if extension else _SCHEMAS[fn.schema]
    return ProcRow(oid, name, namespace, type_oid(s.returns),
                   in_types, fn.kind.prokind, s.setof,
                   C_LANGUAGE if extension else INTERNAL_LANGUAGE,
                   fn.strict if s.strict is None else s.strict,
                   s.volatility or fn.volatility,
                   variadic, names, s.defaults, in_types + out_types if modes else (), modes,
                   name)


@lru_cache(maxsize=1)
def proc_rows() -> tuple[ProcRow, ...]:
    """The pg_proc rows: one per name and signature of every declaration that is not a
    keyword form, OIDs numbered in (name, argument types) order."""
    _require_loaded()
    entries = sorted(((s.extension is not None, name, tuple(type_oid(a) for a in s.args), fn, s)
                      for name, fn in _FUNCTIONS.items() if not fn.keyword
                      for s in fn.signatures), key=lambda x: x[:3])
    rows, oids = [], {False: BUILTIN_FIRST_OID, True: VECTOR_FIRST_OID}
    for extension, name, _args, fn, s in entries:
        rows.append(_proc_row(oids[extension], name, fn, s))
        oids[extension] += 1
    if oids[False] > VECTOR_FIRST_OID:
        raise RuntimeError("built-in function OIDs overflow into pgvector's range")
    return tuple(rows)


@lru_cache(maxsize=1)
def procs_by_oid() -> dict[int, ProcRow]:
    """pg_proc rows by OID, for regproc output and catalog joins."""
    return {p.oid: p for p in proc_rows()}


@lru_cache(maxsize=1)
def proc_oids() -> dict[str, int]:
    """Function name → pg_proc OID (the first of that name)."""
    out: dict[str, int] = {}
    for p in proc_rows():
        out.setdefault(p.name, p.oid)
    return out


__all__ = ["Function", "Kind", "ProcRow", "Signature", "aggregate", "declare", "functions",
           "kind_of", "lookup", "mark_loaded", "names", "parse_signature", "proc_oids",
           "proc_rows", "procs_by_oid", "scalar", "set_returning", "sig", "type_oid", "window"]
