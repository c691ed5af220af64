"""Prepared statements' round trips compiled: a vector top-k's (`CompiledTopK`) and a
write's without result columns (`CompiledWrite`).

A driver runs a prepared statement as Bind, Describe of its portal (often), Execute and Sync.
When the statement is a vector top-k the engine runs in one step (`PreparedStatement.fused`:
`SELECT id FROM items ORDER BY emb <-> $1 LIMIT 10`), what the protocol does around the
search is the same every time but for the bound values (the query vector, and any value a
filter or LIMIT binds beside it): the portal it makes and drops, the
RowDescription, the row encoders looked up by the result's shape, the CommandComplete and
ReadyForQuery. `CompiledTopK` works all of that out once, the first time the round trip runs,
and each later run (`Connection.run_bound`) decodes the values, runs the statement and writes
the answer with what it fixed.

Everything the answer could depend on is a guard checked on each run, and the round trip takes
the general path (`Connection.run_bound`) when one fails: the same Statement object (a new
Parse, Close or re-plan makes another), the same parameter and result formats and Execute, the
plan current (catalog generation, search_path, plan cache), the session idle outside a block
with nothing gathered. The statement itself runs through `Session.run_values` (`Session.run`
whose one-step top-k answers with its columns' Python values instead of an Arrow table: the
winners' numbers go from NumPy to the row encoders), so its settings, statement_timeout, cancel, snapshot, pg_stat counters, pg_stat_statements and logging are the
general path's, and so are its errors and Sync (`Connection._extended`, `on_sync`); an answer
the compiled encoders were not made for (a notice, more rows than a short result, other
column types) is sent by the general result writer. The bytes are the general path's, byte
for byte.

A single-row INSERT, UPDATE or DELETE (no RETURNING) is a round trip of the same kind, with
nothing to encode but its command tag: `CompiledWrite` is fixed when the round trip's shape is
kept (`Connection._keep_shape`) and run on the values taken from the receive buffer
(`Connection._run_repeated`): no Bind message, no portal made and dropped. Its guards
are `CompiledTopK`'s, except that a transaction block that has not failed is let in (the
statement writes into its transaction; the portal is kept until the block ends, as a Bind's
is); a value its decoder takes the general path for (NULL aside: an error, an unusual
form) sends the round trip there too, which decodes it again and reports it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa

from sqlvec.types import REG_TYPES
from wire import pgtypes
from wire.messages import BindComplete, CommandComplete, DataRow, Execute

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlvec.session import PreparedStatement, Session
    from sqlvec.types import SqlType
    from wire.connection import Connection, Statement
    from wire.messages import Bind


class CompiledTopK:
    """One prepared top-k's round trip (module docstring): made by `of`; `fits` and `values`
    say whether a round trip runs through it, `steps` runs it."""

    __slots__ = ("statement", "prepared", "name", "portal", "param_formats", "result_formats",
                 "describe", "execute", "decoders", "vector_at", "columns", "arrow_types",
                 "formats", "head", "rows", "encoders", "tags")

    def __init__(self, statement: Statement, bind: Bind, describe: bool, execute: Execute,
                 formats: list[int], rows, encoders: list) -> None:
        prepared = statement.prepared
        self.statement, self.prepared = statement, prepared
        self.name, self.portal = bind.statement, bind.portal
        self.param_formats, self.result_formats = bind.param_formats, bind.result_formats
        self.describe, self.execute = describe, execute
        codes = bind.param_formats
        # Each parameter's decoder: the query vector's (`_vector_decoder`), the others' as a
        # Bind decodes them (`pgtypes.param_decoder`).
        at = prepared.fused.topk.query_param  # type: ignore[union-attr]
        self.vector_at = at
        self.decoders = [
            _vector_decoder(t, pgtypes.param_format(codes, i)) if i == at
            else pgtypes.param_decoder(t, pgtypes.param_format(codes, i))
            for i, t in enumerate(prepared.param_types)]
        self.columns = prepared.columns
        self.arrow_types = list(prepared.fused.arrow_types)  # type: ignore[union-attr]
        self.formats = formats
        # BindComplete, and the portal's RowDescription when the round trip describes it.
        self.head = BIND_COMPLETE + (statement.description(formats) if describe else b"")
        self.rows = rows  # one integer column's whole DataRows, or None
        self.encoders = encoders  # else each column's cells (`pgtypes.short_encoder`)
        self.tags: dict[str, bytes] = {}  # CommandComplete by tag, encoded

    @classmethod
    def of(cls, statement: Statement | None, bind: Bind, describe: bool,
           execute: Execute) -> CompiledTopK | None:
        """The compiled round trip of `statement` bound by `bind`, or None when it is not a
        one-step top-k whose query vector is a parameter and whose answer the short encoders
        write."""
        if statement is None:
            return None
        prepared = statement.prepared
        fused = prepared.fused
        columns = prepared.columns
        count = len(prepared.param_types)
        if fused is None or not columns or fused.topk.query_param is None \
                or len(bind.params) != count or len(bind.param_formats) not in (0, 1, count) \
                or execute.max_rows != 0 or execute.portal != bind.portal:
            return None
        codes = bind.result_formats
        if len(codes) not in (0, 1, len(columns)):
            return None
        formats = [pgtypes.TEXT] * len(columns) if not codes else \
            [codes[0]] * len(columns) if len(codes) == 1 else list(codes)
        types = [c.type for c in columns]
        arrow = fused.arrow_types
        if any(t.name in REG_TYPES for t in types) or len(arrow) != len(types):
            return None
        rows = pgtypes.short_row_encoder(types[0], formats[0], arrow[0]) \
            if len(types) == 1 else None
        encoders = [pgtypes.short_encoder(t, fmt, a) for t, fmt, a in zip(types, formats, arrow)]
        if rows is None and any(e is None for e in encoders):
            return None
        return cls(statement, bind, describe, execute, formats, rows, encoders)

    def fits(self, connection: Connection, bind: Bind, describe: bool, execute: Execute) -> bool:
        """Whether this round trip is the one compiled (its values aside) and nothing its
        answer depends on besides the data has changed since."""
        return describe is self.describe \
            and (execute is self.execute or execute == self.execute) \
            and bind.portal == self.portal and len(bind.params) == len(self.decoders) \
            and bind.param_formats == self.param_formats \
            and bind.result_formats == self.result_formats \
            and _still_compiled(connection, bind.statement, self.statement, self.prepared)

    def current(self, connection: Connection) -> bool:
        """`fits` of a round trip known to be the compiled one but for its value (a repeat
        recognised in the receive buffer: `RepeatedRoundTrip`): only what may have changed
        since is checked."""
        return _still_compiled(connection, self.name, self.statement, self.prepared)

    @property
    def bounded(self) -> bool:
        """Whether its answer is always far below SEND_BUFFER (a short result of one integer
        column, a notice at most besides), so it is held whole until the round trip settles."""
        return self.rows is not None

    def values(self, bind: Bind) -> list | None:
        """The bound parameters, decoded (`values_of`)."""
        return self.values_of(bind.params)

    def values_of(self, values: tuple[bytes | None, ...] | list[bytes | None]) -> list | None:
        """The parameters as bound, decoded; None when the query vector is NULL or a value
        does not decode here (the general path runs the round trip then, and reports the
        error)."""
        if values[self.vector_at] is None:
            return None
        try:
            return [decode(value) for decode, value in zip(self.decoders, values)]
        except Exception:
            return None

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
        tag = self.tags.get(result.tag)
        if tag is None:
            tag = self.tags[result.tag] = CommandComplete(result.tag).encode()
        connection.send_raw(data + tag)

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
        try:
            return [decode(value) for decode, value in zip(self.decoders, values)]
        except Exception:
            return None

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
