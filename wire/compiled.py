"""Prepared statements' round trips compiled: a read's whose engine answers with Python values
(`CompiledRead`: a vector top-k, a one-row statement over no table) and a write's without
result columns (`CompiledWrite`).

A driver runs a prepared statement as Bind, Describe of its portal (often), Execute and Sync.
When the statement is a vector top-k the engine runs in one step (`PreparedStatement.fused`:
`SELECT id FROM items ORDER BY emb <-> $1 LIMIT 10`), or a one-row statement whose row it
computes from the parameters in Python (`PreparedStatement.scalar`: `SELECT $1::int`), what
the protocol does around it is the same every time but for the values bound (a top-k's
query vector, and any value a filter or LIMIT binds beside it): the portal it
makes and drops, the RowDescription, the row encoders looked up by the result's shape, the
CommandComplete and ReadyForQuery. `CompiledRead` works all of that out once, the first time
the round trip runs, and each later run (`Connection.run_bound`) decodes the values, runs
the statement and writes the answer with what it fixed.

Everything the answer could depend on is a guard checked on each run, and the round trip takes
the general path (`Connection.run_bound`) when one fails: the same Statement object (a new
Parse, Close or re-plan makes another), the same parameter and result formats and Execute, the
plan current (catalog generation, search_path, plan cache), the session idle outside a block
with nothing gathered, extra_float_digits the same when it writes float text cells. The statement itself runs through `Session.run_values` (`Session.run`
whose one-step top-k or one-row statement answers with its columns' Python values instead of
an Arrow table: the winners' numbers go from NumPy to the row encoders, a computed row
straight to them), so its settings, statement_timeout, cancel, snapshot, pg_stat counters,
pg_stat_statements and logging are the general path's, and so are its errors and Sync
(`Connection._extended`, `on_sync`); an answer the compiled encoders were not made for (a
notice, more rows than a short result, other column types) is sent by the general result
writer. The bytes are the general
path's, byte for byte.

A single-row INSERT, UPDATE or DELETE (no RETURNING) is a round trip of the same kind, with
nothing to encode but its command tag: `CompiledWrite` is fixed when the round trip's shape is
kept (`Connection._keep_shape`) and run on the values taken from the receive buffer
(`Connection._run_repeated`): no Bind message, no portal made and dropped. Its guards
are `CompiledRead`'s, except that a transaction block that has not failed is let in (the
statement writes into its transaction; the portal is kept until the block ends, as a Bind's
is); a value its decoder takes the general path for (NULL aside: an error, an unusual
form) sends the round trip there too, which decodes it again and reports it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa

from sqlvec.types import REG_TYPES
from wire import pgtypes
from wire.messages import BindComplete, CommandComplete, DataRow, Execute, ReadyForQuery

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlvec.session import PreparedStatement, Session
    from sqlvec.types import SqlType
    from wire.connection import Connection, Statement
    from wire.messages import Bind


class CompiledRead:
    """One prepared read's round trip (module docstring): a one-step top-k's or a one-row
    statement's computed in Python. Made by `of`; `fits` and `params_of` say whether a round
    trip runs through it, `steps` runs it."""

    __slots__ = ("statement", "prepared", "name", "portal", "param_formats", "result_formats",
                 "describe", "execute", "decoders", "top_k", "vector_at", "columns", "arrow_types",
                 "formats", "head", "rows", "encoders", "tags", "bounded", "digits")

    def __init__(self, statement: Statement, bind: Bind, describe: bool, execute: Execute,
                 arrow_types: list[pa.DataType], formats: list[int], rows,
                 encoders: list, digits: int | None) -> None:
        prepared = statement.prepared
        self.statement, self.prepared = statement, prepared
        self.name, self.portal = bind.statement, bind.portal
        self.param_formats, self.result_formats = bind.param_formats, bind.result_formats
        self.describe, self.execute = describe, execute
        self.top_k = prepared.fused is not None
        codes = bind.param_formats
        # Each parameter's decoder: a top-k's query vector's (`_vector_decoder`), the others'
        # as a Bind decodes them.
        fused = prepared.fused
        self.vector_at = None if fused is None else fused.topk.query_param
        self.decoders = [
            _vector_decoder(t, pgtypes.param_format(codes, i)) if i == self.vector_at
            else pgtypes.param_decoder(t, pgtypes.param_format(codes, i))
            for i, t in enumerate(prepared.param_types)]
        self.columns = prepared.columns
        self.arrow_types = arrow_types
        self.formats = formats
        # BindComplete, and the portal's RowDescription when the round trip describes it.
        self.head = BIND_COMPLETE + (statement.description(formats) if describe else b"")
        self.rows = rows  # one integer column's whole DataRows, or None
        self.encoders = encoders  # else each column's cells (`pgtypes.short_encoder`)
        self.digits = digits  # extra_float_digits its float text cells are written under
        self.tags: dict[str, bytes] = {}  # CommandComplete by tag, encoded
        # Whether its answer is always far below SEND_BUFFER (a short result of one integer
        # column under a constant LIMIT, or one row of fixed-size cells; a notice at most
        # besides), so it is held whole until the round trip settles. (A LIMIT bound as a
        # parameter may ask for any number of rows.)
        self.bounded = rows is not None and fused.topk.k.const if fused is not None else all(
            c.type.name in _FIXED_SIZE for c in prepared.columns)  # type: ignore[union-attr]

    @classmethod
    def of(cls, statement: Statement | None, bind: Bind, describe: bool, execute: Execute,
           float_digits: int) -> CompiledRead | None:
        """The compiled round trip of `statement` bound by `bind`, or None when it is neither
        a one-step top-k whose query vector is a parameter nor a one-row statement computed in Python, or its
        answer is not one the short encoders write (float text: under extra_float_digits
        `float_digits`, which it then checks at each run)."""
        if statement is None:
            return None
        prepared = statement.prepared
        fused, scalar = prepared.fused, prepared.scalar
        columns = prepared.columns
        count = len(prepared.param_types)
        if fused is None and scalar is None or not columns \
                or fused is not None and fused.topk.query_param is None \
                or len(bind.params) != count or len(bind.param_formats) not in (0, 1, count) \
                or execute.max_rows != 0 or execute.portal != bind.portal:
            return None
        codes = bind.result_formats
        if len(codes) not in (0, 1, len(columns)):
            return None
        formats = [pgtypes.TEXT] * len(columns) if not codes else \
            [codes[0]] * len(columns) if len(codes) == 1 else list(codes)
        types = [c.type for c in columns]
        arrow = list(fused.arrow_types if fused is not None else  # type: ignore[union-attr]
                     (t.to_arrow() for t in types))
        if any(t.name in REG_TYPES for t in types) or len(arrow) != len(types):
            return None
        rows = pgtypes.short_row_encoder(types[0], formats[0], arrow[0]) \
            if len(types) == 1 else None
        encoders = [pgtypes.short_encoder(t, fmt, a) for t, fmt, a in zip(types, formats, arrow)]
        floats = [pgtypes.float_text_encoder(t, a, float_digits) if e is None
                  and fmt == pgtypes.TEXT else None
                  for t, fmt, a, e in zip(types, formats, arrow, encoders)]
        encoders = [e or f for e, f in zip(encoders, floats)]
        if rows is None and any(e is None for e in encoders):
            return None
        return cls(statement, bind, describe, execute, arrow, formats, rows, encoders,
                   float_digits if any(floats) else None)

    def fits(self, connection: Connection, bind: Bind, describe: bool, execute: Execute) -> bool:
        """Whether this round trip is the one compiled (its values aside) and nothing its
        answer depends on besides the data has changed since."""
        return describe is self.describe \
            and (execute is self.execute or execute == self.execute) \
            and bind.portal == self.portal and len(bind.params) == len(self.decoders) \
            and bind.param_formats == self.param_formats \
            and bind.result_formats == self.result_formats \
            and self.current(connection, bind.statement)

    def current(self, connection: Connection, name: str | None = None) -> bool:
        """`fits` of a round trip known to be the compiled one but for its values (a repeat
        recognised in the receive buffer: `RepeatedRoundTrip`): only what may have changed
        since is checked (of statement `name`, by default the one compiled)."""
        return _still_compiled(connection, self.name if name is None else name,
                               self.statement, self.prepared) \
            and (self.digits is None or connection._float_digits() == self.digits)

    def params_of(self, values: tuple[bytes | None, ...]) -> list | None:
        """The bound values decoded; None when one does not decode here, or a top-k's query
        vector is NULL (the general path runs the round trip then, and reports the error)."""
        params = decoded(self.decoders, values)
        if params is None or self.top_k and params[self.vector_at] is None:
            return None
        return params

    def answer_of(self, params: list) -> bytes | None:
        """The whole answer of an idle connection's round trip of a one-row statement whose row
        the engine computes in Python (`ScalarRow`) from `params`, as `steps` and the Sync
        write it: for a front end that answers it standing for the run (a worker's
        `KeptAnswer`); None when the row is left to the operator tree."""
        values = self.prepared.scalar.values(params)  # type: ignore[attr-defined]
        data = None if values is None else self._encode_values(values)
        if data is None:
            return None
        return self.head + data + self._tag(f"SELECT {len(values[0])}") + READY_IDLE

    def _tag(self, tag: str) -> bytes:
        """CommandComplete of `tag`, encoded once."""
        encoded = self.tags.get(tag)
        if encoded is None:
            encoded = self.tags[tag] = CommandComplete(tag).encode()
        return encoded

    def steps(self, connection: Connection, params: list) -> None:
        """Bind's answer, the RowDescription if asked, the statement run and its answer (its
        errors are the caller's: `Connection._extended`)."""
        connection.send_raw(self.head)
        session = connection.session
        assert session is not None
        result = session.run_values(self.prepared, params)
        changed = session.drain_changed_settings()
        if changed:
            connection._send_settings(changed)
        data = None if result.notices or result.columns is not self.columns \
            else self._encode_values(result.values) if result.values is not None \
            else self._encode(result.table)
        if data is None:
            if result.values is not None:
                result.table = self._table_of(result.values)
            connection._send_result(result, self.formats, 0)
            return
        connection.send_raw(data + self._tag(result.tag))

    def _encode(self, table: pa.Table | None) -> bytes | None:
        """The DataRows of a short result of the compiled column types; None for another."""
        if table is None or table.num_rows > pgtypes.SHORT_RESULT \
                or table.schema.types != self.arrow_types:
            return None
        return self._encode_values([column.to_pylist() for column in table.columns])

    def _encode_values(self, values: list[list]) -> bytes | None:
        """The DataRows of a short result given as each column's Python values; None for a
        longer one."""
        count = len(values[0])
        if count > pgtypes.SHORT_RESULT:
            return None
        if self.rows is not None:
            return self.rows(values[0])
        return DataRow.encode_cell_rows(
            [encode(column) for encode, column in zip(self.encoders, values)], count)

    def _table_of(self, values: list[list]) -> pa.Table:
        """The result as a table (for the general result writer), from its columns' values."""
        return pa.Table.from_arrays(
            [pa.array(column, type) for column, type in zip(values, self.arrow_types)],
            names=[c.name for c in self.columns])


class CompiledWrite:
    """A prepared statement's round trip whose statement has no result columns (module
    docstring): made by `of`; `fits` and `decode` say whether a round trip runs through it,
    `steps` runs it."""

    __slots__ = ("statement", "prepared", "decoders", "codes", "head")

    def __init__(self, statement: Statement, decoders: list[Callable],
                 codes: tuple[int, ...], describe: bool) -> None:
        self.statement, self.prepared = statement, statement.prepared
        self.decoders = decoders
        self.codes = codes  # the result formats bound: none, or one for all
        # BindComplete, and NoData when the round trip describes the portal.
        self.head = BIND_COMPLETE + (statement.description([]) if describe else b"")

    @classmethod
    def of(cls, statement: Statement | None, bind: Bind, describe: bool,
           execute: Execute) -> CompiledWrite | None:
        """The compiled round trip of `statement` bound by `bind`, or None when the statement
        has result columns (or is a COPY), or the Bind does not fit it (the general path
        reports that)."""
        if statement is None:
            return None
        prepared = statement.prepared
        types = prepared.param_types
        codes = bind.param_formats
        if prepared.columns is not None or statement.copy is not None \
                or len(bind.params) != len(types) or len(codes) not in (0, 1, len(types)) \
                or len(bind.result_formats) > 1 or execute.max_rows != 0 \
                or execute.portal != bind.portal:
            return None
        return cls(statement, pgtypes.param_decoders(types, codes), bind.result_formats,
                   describe)

    def fits(self, connection: Connection, name: str, portal: str) -> bool:
        """Whether statement `name` is still the one compiled (`_still_compiled`), or, in a
        transaction block that has not failed, still current and bound into a portal the
        Bind may make (the unnamed one, or a name not taken)."""
        if not _still_planned(connection, name, self.statement, self.prepared):
            return False
        session = connection.session
        assert session is not None
        if _idle(connection, session):
            return True
        return session.explicit and not session.implicit and not session.failed \
            and (not portal or portal not in connection.portals)

    def decode(self, values: tuple[bytes | None, ...]) -> list | None:
        """The bound values decoded; None when one does not decode here (the general path
        then runs the round trip, and reports the error)."""
        return decoded(self.decoders, values)

    def steps(self, connection: Connection, params: list, portal: str) -> None:
        """Bind's answer, NoData if asked, the statement run and its answer (its errors are
        the caller's: `Connection._extended`). In a block the portal stays, run, until the
        block ends, as the Bind and Execute the round trip stands for leave it."""
        connection.send_raw(self.head)
        session = connection.session
        assert session is not None
        kept = connection.block_portal(portal, self.statement, params, self.codes)
        result = session.run(self.prepared, params)
        if kept is not None:
            kept.result = result
        changed = session.drain_changed_settings()
        if changed:
            connection._send_settings(changed)
        columns = result.columns  # (none: the statement has none; kept general all the same)
        formats = [] if columns is None else [self.codes[0] if self.codes else pgtypes.TEXT] \
            * len(columns)
        connection._send_result(result, formats, 0)


def decoded(decoders: list[Callable], values: tuple[bytes | None, ...]) -> list | None:
    """Bound values decoded by each parameter's decoder; None when one does not decode here
    (the general path then decodes it again, and reports the error)."""
    try:
        return [decode(value) for decode, value in zip(decoders, values)]
    except Exception:
        return None


# Result types whose cells have a fixed size (`CompiledRead.bounded`).
_FIXED_SIZE = frozenset({"int2", "int4", "int8", "float4", "float8", "bool", "oid"})


def _vector_decoder(t: SqlType, fmt: int) -> Callable[[bytes], object]:
    """The decoder of a top-k's query vector of type `t` bound in format `fmt`, chosen once: a
    binary vector's is checked as the engine checks a bound vector, and bound as it is
    (`pgtypes.bound_vector_decoder`); other types and formats are `decode_param`'s."""
    if fmt == pgtypes.BINARY and t.name == "vector":
        return pgtypes.bound_vector_decoder(t)
    return lambda data: pgtypes.decode_param(data, t, fmt)


def _still_compiled(connection: Connection, name: str, statement: Statement,
                    prepared: PreparedStatement) -> bool:
    """Whether statement `name` is still `statement`, planned as `prepared` was and still
    current, and the session idle outside a block with nothing gathered: what a compiled round
    trip was made for."""
    return _still_planned(connection, name, statement, prepared) and \
        _idle(connection, connection.session)  # type: ignore[arg-type]


def _still_planned(connection: Connection, name: str, statement: Statement,
                   prepared: PreparedStatement) -> bool:
    """Whether statement `name` is still `statement`, planned as `prepared` was and still
    current, with no rows gathered."""
    session = connection.session
    return connection.statements.get(name) is statement and statement.prepared is prepared \
        and session is not None and session.pending is None \
        and session.plan_is_current(prepared)


def _idle(connection: Connection, session: Session) -> bool:
    """Whether the connection holds no portal and the session is outside a block."""
    return not connection.portals and not session.explicit and not session.implicit


BIND_COMPLETE = BindComplete().encode()
READY_IDLE = ReadyForQuery("I").encode()
