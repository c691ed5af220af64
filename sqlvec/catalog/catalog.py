"""The catalog of one database: schemas, tables, sequences, extensions and roles.

Tables and indexes live in the store's manifest (storage/schema.py); everything else the catalog
owns is kept in the manifest's `catalog` section, which this module reads and writes:

    schemas     {name: {"oid": int, "owner": role name}}
    sequences   {"schema.name": {"oid", "type", "start", "increment", "min", "max", "cache",
                 "cycle", "persistence" ('u': unlogged; absent or 'p': logged),
                 "next" (what nextval gives when "value" is null), "value" (last value
                 handed out or null), "reserved" (values up to this are durable), "owned_by":
                 "table.column", "incarnation" (a new OID at each restart: ALTER SEQUENCE ...
                 RESTART, TRUNCATE ... RESTART IDENTITY, as PostgreSQL gives the sequence a new
                 relfilenode; absent: 0)}} (options as sequences.py reads them)
    extensions  {name: {"oid", "version", "schema"}}
    roles       {name: {"oid", "superuser", "login", "password" (SCRAM verifier or null)}}
    comments    {"<classoid>:<objoid>:<subid>": text}

Sequences hand out values from memory and reserve them durably in blocks (as PostgreSQL logs
sequence values ahead, never past the sequence's bound), so a crash can skip values but never
repeat one nor go past MAXVALUE / MINVALUE. Reservations and setval are not transactional, as
in PostgreSQL: inside a transaction block with open schema changes they are written at once
(`Store.update_catalog_lasting`) and neither ROLLBACK nor a crash before COMMIT takes them back.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar

from sqlvec.catalog import sequences as seqrules
from sqlvec.catalog.sequences import SequenceOptions
from sqlvec.catalog.views import all_views, dependents, find_view, remove_views
from sqlvec.errors import (
    DuplicateObject,
    DuplicateTable,
    FeatureNotSupported,
    SqlVecError,
    UndefinedObject,
    UndefinedTable,
)
from sqlvec.storage.store import Store, UnavailableTable, with_entry_fields
from sqlvec.storage.table import Table

# OIDs PostgreSQL gives these objects; clients compare against them.
PG_CATALOG_OID = 11
PUBLIC_OID = 2200
INFORMATION_SCHEMA_OID = 13000
BOOTSTRAP_SUPERUSER_OID = 10
SYSTEM_SCHEMAS = {"pg_catalog": PG_CATALOG_OID, "information_schema": INFORMATION_SCHEMA_OID}
SEQUENCE_BLOCK = 32
# What tells one sequence from another of the same name (or from itself before a restart):
# its values set in a rolled-back transaction block are kept only for the same one.
SEQUENCE_IDENTITY = ("oid", "incarnation")
VECTOR_EXTENSION_VERSION = "0.8.0"
# Extensions CREATE EXTENSION records: both are built in (pg_stat_statements' view and reset
# function exist whether or not it is created, so tools that create it first work too).
EXTENSION_VERSIONS = {"vector": VECTOR_EXTENSION_VERSION, "pg_stat_statements": "1.10"}


# The ids of the tables names resolved to while a statement is planned (`resolving_tables`):
# the statement then runs holding them against schema changes (session/ddl_lock.py).
_RESOLVED: ContextVar[set[int] | None] = ContextVar("resolved_tables", default=None)


@contextlib.contextmanager
def resolving_tables() -> Iterator[set[int]]:
    """Collect the ids of the tables `Catalog.find_table` finds in this thread meanwhile."""
    seen: set[int] = set()
    token = _RESOLVED.set(seen)
    try:
        yield seen
    finally:
        _RESOLVED.reset(token)


def note_resolved(table_ids: Iterable[int]) -> None:
    """Count `table_ids` among those `resolving_tables` collects: tables a statement reaches
    without naming them (its writes' foreign-key checks and actions)."""
    seen = _RESOLVED.get()
    if seen is not None:
        seen.update(table_ids)


class Catalog:
    """Name resolution and catalog objects of one database (thread-safe)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock = threading.RLock()
        # Last values handed out, by key, OID and incarnation (`_cache_key`): a sequence
        # created again under the same name (after a rolled-back CREATE, or DROP and CREATE)
        # or restarted starts afresh, and one whose restart is rolled back finds its values.
        self._seq_values: dict[tuple[str, int, int], int | None] = {}
        if "schemas" not in store.catalog:
            store.update_catalog(lambda c: {
                **c,
                "schemas": {"public": {"oid": PUBLIC_OID, "owner": "postgres"}},
                "sequences": {}, "extensions": {}, "comments": {},
                "roles": {"postgres": {"oid": BOOTSTRAP_SUPERUSER_OID, "superuser": True,
                                       "login": True, "password": None}},
            })

    @property
    def state(self) -> dict:
        return self.store.catalog

    # Schemas ------------------------------------------------------------------------------------

    def has_schema(self, name: str) -> bool:
        """Whether `name` is a schema, the system ones included."""
        return name in SYSTEM_SCHEMAS or name in self.state["schemas"]

    def create_schema(self, name: str, *, if_not_exists: bool = False, owner: str = "postgres") -> None:
        """CREATE SCHEMA; an existing name is 42P06, or nothing with IF NOT EXISTS (the caller sends
        the notice)."""
        with self._lock:
            if self.has_schema(name):
                if if_not_exists:
                    return
                raise DuplicateObject(f'schema "{name}" already exists', sqlstate="42P06")
            oid = self.store.allocate_oid()
            self.store.update_catalog(lambda c: {
                **c, "schemas": {**c["schemas"], name: {"oid": oid, "owner": owner}}})

    def drop_schema(self, name: str, *, if_exists: bool = False, cascade: bool = False) -> None:
        """DROP SCHEMA: refuses system schemas and, without CASCADE, a schema that still has tables
        (2BP01, naming them)."""
        with self._lock:
            if name not in self.state["schemas"]:
                if if_exists:
                    return
                if name in SYSTEM_SCHEMAS:
                    raise SqlVecError(f'cannot drop schema {name} because it is required by the '
                                      "database system", sqlstate="2BP01")
                raise UndefinedObject(f'schema "{name}" does not exist', sqlstate="3F000")
            tables = [t for t in self.store.tables.values() if t.def_.schema == name]
            views = [v for v in all_views(self) if v.schema == name]
            if (tables or views) and not cascade:
                raise SqlVecError(
                    f"cannot drop schema {name} because other objects depend on it",
                    sqlstate="2BP01",
                    detail="\n".join([f"table {name}.{t.def_.name} depends on schema {name}"
                                      for t in tables] +
                                     [f"view {name}.{v.name} depends on schema {name}"
                                      for v in views]),
                    hint="Use DROP ... CASCADE to drop the dependent objects too.")
            remove_views(self, [v.key for v in views])
            for table in tables:
                self.drop_table(table)
            self.store.update_catalog(lambda c: {
                **c, "schemas": {k: v for k, v in c["schemas"].items() if k != name}})

    # Tables -------------------------------------------------------------------------------------

    def find_table(self, name: str, schema: str | None, search_path: list[str]) -> Table | None:
        """The table a name means: in `schema` when qualified, else the first on the search path, as
        PostgreSQL resolves it."""
        if schema is not None:
            return _resolved(self.store.find_table(name, schema))
        for candidate in search_path:
            table = self.store.find_table(name, candidate)
            if table is not None:
                return _resolved(table)
        return None

    def table(self, name: str, schema: str | None, search_path: list[str]) -> Table:
        """The table a statement reads or writes; XX001 when its files are damaged (DROP TABLE
        and catalog listings use `find_table`, which still finds it)."""
        table = self.find_table(name, schema, search_path)
        if table is None:
            shown = f"{schema}.{name}" if schema else name
            if find_view(self, name, schema, search_path) is not None:
                raise FeatureNotSupported(
                    f'view "{shown}" can only be read: this statement needs a table')
            raise UndefinedTable(f'relation "{shown}" does not exist')
        if isinstance(table, UnavailableTable):
            raise table.error()
        return table

    def creation_schema(self, schema: str | None, search_path: list[str]) -> str:
        """Where CREATE puts an unqualified object: the first existing schema of the path."""
        if schema is not None:
            if not self.has_schema(schema):
                raise UndefinedObject(f'schema "{schema}" does not exist', sqlstate="3F000")
            return schema
        for candidate in search_path:
            if candidate in self.state["schemas"]:
                return candidate
        raise SqlVecError("no schema has been selected to create in", sqlstate="3F000")

    def relation_exists(self, name: str, schema: str) -> bool:
        """Whether a table, index or sequence already uses the name, since they share one namespace
        per schema."""
        if self.store.find_table(name, schema) is not None:
            return True
        return any(ix.name == name and t.def_.schema == schema
                   for t in self.store.tables.values() for ix in t.def_.indexes) or \
            any(k.name == name and t.def_.schema == schema  # a key's index: <table>_pkey...
                for t in self.store.tables.values() for k in t.def_.unique_keys) or \
            f"{schema}.{name}" in self.state["sequences"] or \
            f"{schema}.{name}" in self.state.get("views", {})

    def check_new_relation(self, name: str, schema: str) -> None:
        """Refuse (42P07) a relation name already taken in the schema."""
        if self.relation_exists(name, schema):
            raise DuplicateTable(f'relation "{name}" already exists')

    def drop_table(self, table: Table) -> None:
        """Drop a table, the sequences its serial columns own and the views reading it (the
        caller has refused the drop already unless CASCADE was given)."""
        with self._lock:
            remove_views(self, [v.key for v in dependents(self, table.def_.oid)])
            owned = [k for k, v in self.state["sequences"].items()
                     if (v.get("owned_by") or "").startswith(f"{table.def_.id}.")]
            self.store.drop_table(table.id)
            if owned:
                self.store.update_catalog(lambda c: {
                    **c, "sequences": {k: v for k, v in c["sequences"].items() if k not in owned}})
                self._forget_values(owned)

    # Sequences ----------------------------------------------------------------------------------

    def create_sequence(self, name: str, schema: str, options: SequenceOptions | None = None,
                        *, owned_by: str | None = None, persistence: str = "p",
                        write: Callable[[Callable[[dict], dict]], object] | None = None) -> str:
        """Create a sequence (for CREATE SEQUENCE, a serial or an identity column) with
        `options` checked, written by `write` (given the catalog change; by default
        `Store.update_catalog`), and return its key, `schema.name`. An unlogged one
        (`persistence` 'u') starts afresh after a crash (`reset_unlogged_sequences`)."""
        key = f"{schema}.{name}"
        entry = seqrules.configured(None, options or SequenceOptions({}), None)
        if persistence != "p":
            entry["persistence"] = persistence
        with self._lock:
            self.check_new_relation(name, schema)
            oid = self.store.allocate_oid()
            entry = {"oid": oid, **entry, "value": None, "reserved": None, "owned_by": owned_by}
            (write or self.store.update_catalog)(
                lambda c: {**c, "sequences": {**c["sequences"], key: entry}})
        return key

    def alter_sequence(self, key: str, options: SequenceOptions,
                       write: Callable[[Callable[[dict], dict]], object] | None = None,
                       **fields: object) -> None:
        """ALTER SEQUENCE's options and `fields` (OWNED BY's `owned_by`), checked against the
        sequence's current value, written at once by `write` (given the catalog change; by
        default `Store.update_catalog`) while no nextval runs. Options that change how values
        are handed out (all but START and OWNED BY) start a new incarnation, as PostgreSQL
        gives the sequence a new relfilenode: counting goes on from the last value (or from
        the RESTART value), and in a transaction block a rollback brings the old incarnation
        back with the values it had handed out, and the options it had."""
        with self._lock:
            seq = self.sequence(key)
            last = self._last_value(key, seq)
            entry = seqrules.configured(seq, options, last)
            changes = {k: entry[k] for k in seqrules.OPTION_FIELDS} | fields
            if set(options.given) - {"start", "owned_by"}:
                last = None if options.has("restart") else last
                changes |= {"value": last, "reserved": last,
                            "incarnation": self.store.allocate_oid()}
                if not self.store.deferred:
                    self._forget_values([key])
            (write or self.store.update_catalog)(lambda c: _set_seq(c, key, **changes))

    def sequence(self, key: str) -> dict:
        """A sequence's stored state by key; a missing one is 42P01, as a missing relation."""
        try:
            return self.state["sequences"][key]
        except KeyError:
            raise UndefinedTable(f'relation "{key.split(".", 1)[-1]}" does not exist') from None

    def nextval(self, key: str, count: int = 1, ahead: int = 0) -> list[int]:
        """The next `count` values of a sequence, and up to `ahead` more before its bound (a
        session's cache: it never wraps around, as PostgreSQL's stops fetching there); durable
        before they are handed out. At its bound it wraps around (CYCLE) or fails (2200H)
        after taking the values before."""
        with self._lock:
            seq = self.sequence(key)
            inc = int(seq["increment"])
            name = key.split(".", 1)[1]
            values, wrapped, error = seqrules.advance(seq, name, self._last_value(key, seq),
                                                      count)
            if ahead and error is None:
                values += seqrules.advance({**seq, "cycle": False}, name, values[-1], ahead)[0]
            if values:
                top = values[-1]
                reserved = seq.get("reserved")
                if reserved is None or wrapped or (inc > 0 and top > reserved) or \
                        (inc < 0 and top < reserved):
                    new_reserved = seqrules.reservation(seq, top, SEQUENCE_BLOCK)
                    self.store.update_catalog_lasting(
                        "sequences", key, {"value": top, "reserved": new_reserved},
                        SEQUENCE_IDENTITY)
                self._seq_values[_cache_key(key, seq)] = top
            if error is not None:
                raise error
            return values

    def give_back(self, key: str, last: int, value: int) -> None:
        """Make `value` the sequence's last value again if `last` still is (the values after
        it went unused and nobody took one since); the reserved block stays as it is."""
        with self._lock:
            cache_key = _cache_key(key, self.sequence(key))
            if self._seq_values.get(cache_key) == last:
                self._seq_values[cache_key] = value

    def _last_value(self, key: str, seq: dict) -> int | None:
        """The last value handed out, as far as this process knows: after a restart values up
        to the reserved block's end may have been handed out already, so counting resumes
        after it (as PostgreSQL's sequences skip what they logged ahead after a crash)."""
        cache_key = _cache_key(key, seq)
        if cache_key in self._seq_values:
            return self._seq_values[cache_key]
        reserved = seq.get("reserved")
        return seq["value"] if reserved is None else reserved

    def setval(self, key: str, value: int, is_called: bool = True) -> int:
        """setval(): make `value` the last value handed out, or (`is_called` false) the one the
        next nextval gives, durably; outside the sequence's bounds it is 22003. Returns
        `value`."""
        with self._lock:
            seq = self.sequence(key)
            seqrules.check_setval(seq, key.split(".", 1)[1], value)
            last = value if is_called else None
            self.store.update_catalog_lasting(
                "sequences", key,
                {"value": last, "reserved": last, **({} if is_called else {"next": value})},
                SEQUENCE_IDENTITY)
            self._seq_values[_cache_key(key, seq)] = last
            return value

    def restart_owned(self, table_ids: list[int]) -> None:
        """TRUNCATE ... RESTART IDENTITY: the sequences owned by the tables' columns (serial and
        identity columns) hand out their start value next. The restart is a catalog change, so
        in a transaction block it is kept and undone with the block's other schema changes;
        values handed out since are cached under the new incarnation (never one used before:
        a restart rolled back and done again starts afresh too), and a rollback, which brings
        the old incarnation back, finds the sequence where it was, as PostgreSQL's."""
        owners = tuple(f"{i}." for i in table_ids)
        with self._lock:
            keys = [k for k, v in self.state["sequences"].items()
                    if (v.get("owned_by") or "").startswith(owners)]
            if keys:
                fresh = {key: self.store.allocate_oid() for key in keys}
                if not self.store.deferred:  # no rollback can bring the old values back
                    self._forget_values(keys)
                self.store.update_catalog(lambda c: _restarted(c, fresh))

    def _forget_values(self, keys: list[str]) -> None:
        """Drop the cached last values of the sequences `keys`, in every incarnation."""
        for known in [k for k in self._seq_values if k[0] in keys]:
            self._seq_values.pop(known, None)

    def pending_value(self, key: str) -> int | None:
        """What nextval gives when the sequence has handed out nothing since it was created,
        restarted or set back (`sequences.pending`); None for a name no sequence has."""
        seq = self.state["sequences"].get(key)
        return None if seq is None else seqrules.pending(seq)

    def currval_of(self, key: str) -> int | None:
        """The sequence's last value handed out (None before the first nextval): the live one,
        which pg_sequences and `SELECT last_value FROM seq` show."""
        seq = self.sequence(key)
        return self._seq_values.get(_cache_key(key, seq), seq["value"])

    # Extensions ---------------------------------------------------------------------------------

    def create_extension(self, name: str, *, if_not_exists: bool = False) -> None:
        """CREATE EXTENSION: only `vector` exists (it is built in), so this records it for clients
        that check pg_extension."""
        if name not in EXTENSION_VERSIONS:
            raise UndefinedObject(
                f'extension "{name}" is not available', sqlstate="0A000",
                hint="sqlvec provides the vector and pg_stat_statements extensions only "
                     "(both are built in).")
        with self._lock:
            if name in self.state["extensions"]:
                if if_not_exists:
                    return
                raise DuplicateObject(f'extension "{name}" already exists')
            oid = self.store.allocate_oid()
            entry = {"oid": oid, "version": EXTENSION_VERSIONS[name], "schema": "public"}
            self.store.update_catalog(lambda c: {**c, "extensions": {**c["extensions"], name: entry}})

    def drop_extension(self, name: str, *, if_exists: bool = False) -> None:
        """DROP EXTENSION: removes the record; the types and functions stay built in."""
        with self._lock:
            if name not in self.state["extensions"]:
                if if_exists:
                    return
                raise UndefinedObject(f'extension "{name}" does not exist')
            self.store.update_catalog(lambda c: {
                **c, "extensions": {k: v for k, v in c["extensions"].items() if k != name}})

    # Roles --------------------------------------------------------------------------------------

    def role(self, name: str) -> dict | None:
        """A role's stored attributes (oid, superuser, login, password), or None."""
        return self.state.get("roles", {}).get(name)


def _unlogged(store: Store) -> dict[str, dict]:
    return {k: v for k, v in store.catalog.get("sequences", {}).items()
            if v.get("persistence") == "u"}


def has_unlogged_sequences(store: Store) -> bool:
    """Whether the store's database has unlogged sequences (what a crash resets)."""
    return bool(_unlogged(store))


def reset_unlogged_sequences(store: Store) -> None:
    """After a crash (the store was not closed cleanly), the unlogged sequences hand out their
    start value next, as PostgreSQL resets unlogged relations from their init fork: one
    catalog commit, when any of them had moved."""
    keys = [k for k, v in _unlogged(store).items()
            if v.get("value") is not None or seqrules.pending(v) != v["start"]]
    if keys:
        fresh = {key: store.allocate_oid() for key in keys}
        store.update_catalog(lambda c: _restarted(c, fresh))


def _set_seq(catalog: dict, key: str, **fields: object) -> dict:
    return with_entry_fields(catalog, "sequences", key, fields)


def _restarted(catalog: dict, incarnations: dict[str, int]) -> dict:
    """The catalog with the sequences named back before their first value, in their new
    incarnations."""
    for key, incarnation in incarnations.items():
        start = catalog["sequences"][key]["start"]
        catalog = _set_seq(catalog, key, value=None, reserved=None, next=start,
                           incarnation=incarnation)
    return catalog


def _cache_key(key: str, seq: dict) -> tuple[str, int, int]:
    """Where `Catalog._seq_values` keeps a sequence's last value: by name, OID, incarnation."""
    return (key, *seqrules.identity(seq))


def _resolved(table: Table | None) -> Table | None:
    """`table`, its id noted for `resolving_tables` when it collects."""
    if table is not None:
        note_resolved((table.id,))
    return table
