"""SQLSTATE-carrying errors and notices: the only way messages cross from the engine to the wire.

The wire maps the fields one-to-one onto an ErrorResponse (S, C, M, D, H, P, s, t, c, d, n) or, for a
`Notice`, a NoticeResponse. Codes follow PostgreSQL's errcodes.txt so drivers raise the
exception class their users already catch, and notice handlers see the codes PostgreSQL sends.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Notice:
    """A message a statement sends besides its result (NoticeResponse), as PostgreSQL's
    `ereport(NOTICE | WARNING, errcode(...), errmsg(...))`: severity, SQLSTATE and text."""

    severity: str  # NOTICE | WARNING | INFO | LOG | DEBUG
    sqlstate: str
    message: str
    detail: str | None = None
    hint: str | None = None

    @classmethod
    def notice(cls, message: str, sqlstate: str = "00000", *, detail: str | None = None,
               hint: str | None = None) -> Notice:
        """NOTICE; PostgreSQL's default code for it is 00000 (successful completion)."""
        return cls("NOTICE", sqlstate, message, detail, hint)

    @classmethod
    def warning(cls, message: str, sqlstate: str = "01000") -> Notice:
        """WARNING; PostgreSQL's default code for it is 01000 (warning)."""
        return cls("WARNING", sqlstate, message)

    def __str__(self) -> str:
        return f"{self.severity}: {self.message}"


class SqlVecError(Exception):
    """An error with a PostgreSQL SQLSTATE and the optional ErrorResponse fields."""

    sqlstate: str = "XX000"
    severity: str = "ERROR"

    def __init__(
        self,
        message: str,
        *,
        sqlstate: str | None = None,
        detail: str | None = None,
        hint: str | None = None,
        position: int | None = None,
        where: str | None = None,
        schema: str | None = None,
        table: str | None = None,
        column: str | None = None,
        datatype: str | None = None,
        constraint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if sqlstate is not None:
            self.sqlstate = sqlstate
        self.detail = detail
        self.hint = hint
        self.position = position
        self.where = where  # the CONTEXT line (ErrorResponse W), e.g. `JSON data, line 1: {`
        # The object the error is about (ErrorResponse s, t, c, d, n), where PostgreSQL
        # names them: drivers expose them (psycopg's diag.constraint_name, asyncpg's
        # constraint_name) and ORMs read them to tell which constraint failed.
        self.schema = schema
        self.table = table
        self.column = column
        self.datatype = datatype
        self.constraint = constraint

    @property
    def object_fields(self) -> dict[str, str]:
        """The object fields that are set, by ErrorResponse field name."""
        return {k: v for k, v in (("schema", self.schema), ("table", self.table),
                                  ("column", self.column), ("datatype", self.datatype),
                                  ("constraint", self.constraint)) if v}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.sqlstate}: {self.message})"


# Class 0A — feature not supported
class FeatureNotSupported(SqlVecError):
    """A construct sqlvec does not implement; the message names it, so a client learns what to
    rewrite rather than meeting a wrong answer."""

    sqlstate = "0A000"


# Class 08 — connection exception
class ProtocolViolation(SqlVecError):
    """A malformed or out-of-order protocol message; FATAL, because the stream can no longer be
    trusted."""

    sqlstate = "08P01"
    severity = "FATAL"


# Class 22 — data exception
class DataException(SqlVecError):
    """22000: e.g. `different vector dimensions 3 and 4`."""

    sqlstate = "22000"


class InvalidTextRepresentation(SqlVecError):
    """Input text that does not parse as the target type ('abc'::int)."""

    sqlstate = "22P02"


class NumericValueOutOfRange(SqlVecError):
    """A result or input that does not fit its type (integer overflow, float4 range)."""

    sqlstate = "22003"


class DivisionByZero(SqlVecError):
    """Division or modulo by zero, raised instead of Arrow's inf or null."""

    sqlstate = "22012"


class BadCopyFileFormat(SqlVecError):
    """COPY input whose framing is wrong (binary header, field counts), as opposed to a bad
    value."""

    sqlstate = "22P04"


class CharacterNotInRepertoire(SqlVecError):
    """22021: bytes that are not UTF-8 text, a NUL byte included (PostgreSQL's text
    cannot hold one)."""

    sqlstate = "22021"


def invalid_byte_sequence(data: bytes, at: int) -> CharacterNotInRepertoire:
    """PostgreSQL's error for `data`, whose first bad character starts at byte `at`: it names
    that character's bytes (as many as its lead byte announces, as far as the data goes)."""
    lead = data[at]
    size = 2 if lead & 0xE0 == 0xC0 else 3 if lead & 0xF0 == 0xE0 else \
        4 if lead & 0xF8 == 0xF0 else 1
    shown = " ".join(f"0x{b:02x}" for b in data[at:at + size])
    return CharacterNotInRepertoire(f'invalid byte sequence for encoding "UTF8": {shown}')


# Class 23 — integrity constraint violation
class NotNullViolation(SqlVecError):
    """A NULL written into a NOT NULL column."""

    sqlstate = "23502"


class UniqueViolation(SqlVecError):
    """A duplicate key of a primary key or unique constraint."""

    sqlstate = "23505"


class CheckViolation(SqlVecError):
    """A row for which a CHECK constraint's condition is false."""

    sqlstate = "23514"


class ForeignKeyViolation(SqlVecError):
    """A referencing row without its referenced row, or a referenced row removed while
    rows still reference it."""

    sqlstate = "23503"


# Class 25 — invalid transaction state
class InFailedTransaction(SqlVecError):
    """A statement in a transaction that has already failed, before ROLLBACK."""

    sqlstate = "25P02"


class ActiveSqlTransaction(SqlVecError):
    """A statement that cannot run inside a transaction block (CREATE DATABASE, VACUUM, ...)."""

    sqlstate = "25001"


class ReadOnlySqlTransaction(SqlVecError):
    """A write where only reading is possible (a follower store): 25006, as PostgreSQL's
    "cannot execute INSERT in a read-only transaction"."""

    sqlstate = "25006"


# Class 3D / 42 — names and syntax
class InvalidCatalogName(SqlVecError):
    """A database name that does not exist (at startup or in DROP DATABASE)."""

    sqlstate = "3D000"


class SyntaxError_(SqlVecError):
    """SQL that does not parse; trailing underscore to keep Python's SyntaxError usable."""

    sqlstate = "42601"


class UndefinedTable(SqlVecError):
    """A relation name that resolves to nothing on the search path."""

    sqlstate = "42P01"


class UndefinedColumn(SqlVecError):
    """A column name no relation in scope has."""

    sqlstate = "42703"


class UndefinedObject(SqlVecError):
    """A named object (setting, type, index, schema, ...) that does not exist; the base code the
    specific 'undefined' cases share."""

    sqlstate = "42704"


class UndefinedFunction(SqlVecError):
    """No function or operator matches the name and argument types; the hint says so as PostgreSQL's
    does."""

    sqlstate = "42883"


class DuplicateTable(SqlVecError):
    """CREATE of a relation whose name is taken in its schema."""

    sqlstate = "42P07"


class DuplicateObject(SqlVecError):
    """CREATE of another kind of object (extension, index name, database) that exists already."""

    sqlstate = "42710"


class DatatypeMismatch(SqlVecError):
    """A value or operator class whose type does not fit where it is used."""

    sqlstate = "42804"


class InvalidParameterValue(SqlVecError):
    """A setting or function argument outside what it accepts."""

    sqlstate = "22023"


# Class 40 — transaction rollback
class SerializationFailure(SqlVecError):
    """A write that conflicts with a concurrent transaction's; clients retry on 40001."""

    sqlstate = "40001"


# Class 53 — insufficient resources
class DiskFull(SqlVecError):
    """53100: a write failed for lack of disk space (or quota)."""

    sqlstate = "53100"


class OutOfMemory(SqlVecError):
    """53200: a statement would hold more than its memory limit (work_mem)."""

    sqlstate = "53200"


class TooManyConnections(SqlVecError):
    """53300: `sorry, too many clients already` and the reserved-slots message."""

    sqlstate = "53300"
    severity = "FATAL"


# Class 54 — program limit exceeded
class ProgramLimitExceeded(SqlVecError):
    """A request beyond a built-in limit (dimensions, row or message size)."""

    sqlstate = "54000"


class StatementTooComplex(SqlVecError):
    """54001: e.g. `stack depth limit exceeded` for a statement nested too deeply."""

    sqlstate = "54001"


# Class 55 — object not in prerequisite state
class ObjectInUse(SqlVecError):
    """55006: a database or data directory that something else holds open."""

    sqlstate = "55006"


class CantChangeRuntimeParam(SqlVecError):
    """55P02: SET of a setting fixed at server start (or built in)."""

    sqlstate = "55P02"


# Class 57 — operator intervention
class QueryCanceled(SqlVecError):
    """A statement stopped by a cancel request or statement_timeout."""

    sqlstate = "57014"


class AdminShutdown(SqlVecError):
    """57P01: the session is ended by shutdown or pg_terminate_backend."""

    sqlstate = "57P01"
    severity = "FATAL"


# Class 28 — invalid authorization
class InvalidPassword(SqlVecError):
    """A failed password check at startup; FATAL, the connection ends."""

    sqlstate = "28P01"
    severity = "FATAL"


# Class 58 — system error (errors external to the server)
class IoError(SqlVecError):
    """A failed file operation of storage, with the path and the operating system's reason."""

    sqlstate = "58030"


# Class XX — internal: storage files that fail their checks
class DataCorrupted(SqlVecError):
    """Stored data that fails its checks (checksum, header, format version): refuse to serve it
    rather than answer wrongly."""

    sqlstate = "XX001"


class DamagedFile(DataCorrupted):
    """A storage file that is missing or fails its checks. `kind` ("segment file"), `path` and
    `problem` ("missing", "checksum mismatch", ...) stay separate so callers can say which table
    the file takes down, or list it in `sqlvec check`."""

    def __init__(self, kind: str, path: object, problem: str, *, message: str | None = None,
                 detail: str | None = None, hint: str | None = None) -> None:
        self.kind = kind
        self.path = str(path)
        self.problem = problem
        super().__init__(message or f'{kind} "{self.path}" {self.describe()}', detail=detail,
                         hint=hint)

    def describe(self) -> str:
        """"is missing" or "is damaged (<problem>)": the file's state, without its name."""
        return "is missing" if self.problem == "missing" else f"is damaged ({self.problem})"
