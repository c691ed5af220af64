"""FOREIGN KEY enforcement with PostgreSQL's semantics, at the end of every write statement.

While a write statement runs, its transaction records each batch of rows it inserts and
deletes (`Transaction.watch`); UPDATE is a delete followed by an insert of the same number of
rows, which pairs old and new versions. `enforce` then walks the record:

- rows inserted into a referencing table must find their key in the referenced table
  (MATCH SIMPLE: a key with a NULL is not checked; MATCH FULL: all NULL or none). The lookup
  goes through the referenced table's unique-key index (storage/keys.py), plus the keys the
  transaction itself inserted: it costs the rows written, never a scan of the referenced
  table. Rows whose key an UPDATE left unchanged are not checked, as in PostgreSQL.
- keys removed from a referenced table (deleted, or changed by UPDATE, and not present any
  more) are looked up in the referencing tables and the constraint's action runs: NO ACTION
  and RESTRICT fail (23503), CASCADE deletes the referencing rows or gives them the new key,
  SET NULL / SET DEFAULT rewrite their key columns. Those writes are recorded too, so actions
  cascade further. Finding the referencing rows scans the referencing table's key columns,
  one vectorised semi-join per segment: PostgreSQL needs an index on those columns to avoid
  the same scan, and sqlvec has no B-tree index yet.

A constraint that is DEFERRABLE and deferred (INITIALLY DEFERRED, or SET CONSTRAINTS ...
DEFERRED) records the keys to check in the transaction instead; `check_deferred` checks them
against the final state at COMMIT, where a violation fails the COMMIT (23503) and the
transaction is rolled back. Outside a transaction block a statement is its own transaction,
so a deferred constraint is checked at its end.

Checks read the latest committed state (through the key index, which counts commits in
flight) at the end of the statement. What makes them final against concurrent transactions
is the same check repeated at commit, under the store's commit lock (foreign_key_commit.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sqlvec.errors import ForeignKeyViolation, SqlVecError, UniqueViolation
from sqlvec.execution import values as V
from sqlvec.execution.constraints import ROW_CHECKS
from sqlvec.execution.context import ExecContext
from sqlvec.execution.expressions import CompileEnv, Compiler, Frame
from sqlvec.execution.kernels import table_of
from sqlvec.execution.transaction import Transaction
from sqlvec.execution.values import as_array
from sqlvec.float_order import pg_compare
from sqlvec.plan.bind import bind_expr
from sqlvec.sql.binder import Scope
from sqlvec.sql.dialect import parse_one
from sqlvec.storage.keys import MISSING
from sqlvec.storage.row_locks import KEY_SHARE, RowChanged, Waiting, wait_unlocked
from sqlvec.storage.schema import ROWID, ConstraintDef, TableDef
from sqlvec.storage.store import Store
from sqlvec.storage.table import Table

T = TypeVar("T")

# SET CONSTRAINTS ALL ...: the key of the mode that applies to every constraint.
ALL = ""


def involved(store: Store, table: Table) -> bool:
    """Whether writes to `table` need foreign-key work: it has foreign keys, or some table's
    foreign key references it. Asked by every write."""
    return references_others(table) or table.id in fk_tables(store)[1]


def fk_tables(store: Store) -> tuple[set[int], set[int]]:
    """(ids of tables with foreign keys, ids of tables some foreign key references), kept on
    the store per manifest generation (every change of a table definition writes a
    manifest): asked by every write and every commit."""
    generation = store.generation
    cached = store.__dict__.get("_fk_tables")
    if cached is None or cached[0] != generation:
        children: set[int] = set()
        parents: set[int] = set()
        for t in list(store.tables.values()):
            for c in t.def_.constraints:
                if c.kind == "f":
                    children.add(t.id)
                    parents.add(c.ref_table)  # type: ignore[arg-type]
        cached = store.__dict__["_fk_tables"] = (generation, children, parents)
    return cached[1], cached[2]


def run_statement(store: Store, txn: Transaction, body: Callable[[], T],
                  autocommit: bool, waiting: Waiting | None = None) -> T:
    """Run a write statement's `body` in `txn` and enforce the foreign keys its writes touch
    (statement end). In `autocommit` a deferred constraint is checked here too; `waiting`:
    the session's row-lock wait (`Enforcer.waiting`)."""
    changes: list[tuple[str, Table, pa.Table]] = []
    previous = txn.watch
    txn.watch = lambda kind, table, rows: changes.append((kind, table, rows))
    try:
        out = body()
        Enforcer(store, txn, autocommit, waiting).run(changes)
    finally:
        txn.watch = previous
    return out


def references_others(table: Table) -> bool:
    """Whether `table` has foreign keys of its own: what an INSERT into it must check (rows
    added to a referenced table need nothing). Kept on the definition, which never changes
    (ALTER makes a new one): asked by every single-row INSERT."""
    d = table.def_
    known = d.__dict__.get("_references_others")
    if known is None:
        known = any(c.kind == "f" for c in d.constraints)
        object.__setattr__(d, "_references_others", known)
    return known


def check_new_rows(store: Store, table: Table, rows: pa.Table,
                   waiting: Waiting | None = None) -> None:
    """The single-row INSERT committed on its own (autocommit, no transaction buffer): its
    keys looked up in the referenced tables' key indexes before the commit."""
    Enforcer(store, Transaction(), True, waiting).inserted(table, rows, None)


def set_constraints(store: Store, txn: Transaction, names: list[str], deferred: bool) -> None:
    """SET CONSTRAINTS (`names` empty: ALL). Named constraints must exist (42704) and be
    DEFERRABLE (42809). Made IMMEDIATE, a constraint's checks deferred so far run now, as
    PostgreSQL's do: foreign keys', and unique keys' over the rows the transaction inserted."""
    if not names:
        txn.constraint_modes = {ALL: deferred}
    else:
        for name in names:
            found = [c for t in list(store.tables.values()) for c in t.def_.constraints
                     if c.name == name]
            found += [k for t in list(store.tables.values()) for k in t.def_.unique_keys
                      if k.primary and k.name == name]
            if not found:
                raise SqlVecError(f'constraint "{name}" does not exist', sqlstate="42704")
            if not any(c.deferrable for c in found):
                raise SqlVecError(f'constraint "{name}" is not deferrable', sqlstate="42809")
            txn.constraint_modes[name] = deferred
    if not deferred:
        check_deferred(store, txn, None if not names else set(names))
        try:
            for overlay in list(txn.overlays.values()):  # unique keys made immediate: now
                for i, uk in enumerate(overlay.table.keys):
                    if uk.def_.deferrable and (not names or uk.def_.name in names):
                        txn.check_own_keys(overlay.table, i)
        except UniqueViolation as exc:  # the duplicate PostgreSQL's check meets first
            raise txn.reported_duplicate(exc, set(names) if names else None) from None


def check_deferred(store: Store, txn: Transaction, only: set[str] | None = None) -> None:
    """COMMIT: the checks deferred constraints left in the transaction, against its final
    state (23503 for the first that fails); `only`: those of these constraints. As the
    statement-end check, a new row's check locks the referenced rows it finds FOR KEY SHARE,
    so a block deleting one is waited for and this check then fails, and a DELETE after it
    waits for this commit (the locks last until it is applied)."""
    pending = [p for p in txn.deferred_checks if only is None or p[2] in only]
    txn.deferred_checks = [p for p in txn.deferred_checks if only is not None
                           and p[2] not in only]
    enforcer = Enforcer(store, txn, True)
    for origin, child_id, name, keys in pending:
        if keys.num_rows == 0:
            continue  # only NULL keys: nothing to look for
        child = store.tables.get(child_id)
        con = child.def_.constraint(name) if child is not None else None
        if con is None or con.kind != "f":
            continue  # dropped since
        parent = store.tables.get(con.ref_table)  # type: ignore[arg-type]
        if parent is None:
            continue
        share = origin == "child"
        missing = keys.filter(pa.array(~enforcer.present(parent, con, keys, share)))
        if missing.num_rows == 0:
            continue
        found = enforcer.referencing_rows(child, con, missing, [*con.columns])
        if found.num_rows == 0:
            continue
        if origin == "child":
            raise not_present(child.def_, con, parent.def_, found.select(list(con.columns)))
        raise still_referenced(parent.def_, con, child.def_,
                               found.select(list(con.columns)))


def has_pending_checks(store: Store, txn: Transaction, table_id: int) -> bool:
    """Whether the table has checks deferred to COMMIT in this transaction, which PostgreSQL
    keeps as pending trigger events on it (TRUNCATE, ALTER TABLE, CREATE INDEX and DROP TABLE
    of it are then refused, 55006): a foreign key's check of rows written in it as the
    referencing table (`child`) or the referenced one (`parent`), or a DEFERRABLE unique
    key's re-check of a row meeting another."""
    for origin, child_id, name, _keys in txn.deferred_checks:
        if origin == "child":
            if child_id == table_id:
                return True
            continue
        child = store.tables.get(child_id)
        con = child.def_.constraint(name) if child is not None else None
        if con is not None and con.ref_table == table_id:
            return True
    return txn.rechecks_pending(table_id)


def is_deferred(txn: Transaction, con: ConstraintDef) -> bool:
    """Whether `con` is checked at COMMIT in this transaction (SET CONSTRAINTS overrides
    INITIALLY ...)."""
    if not con.deferrable:
        return False
    modes = txn.constraint_modes
    return modes.get(con.name, modes.get(ALL, con.deferred))


# Messages ------------------------------------------------------------------------------------


def key_text(names: list[str] | tuple[str, ...], rows: pa.Table, types) -> str:
    """`(a, b)=(1, x)`: a key as PostgreSQL's DETAIL shows it (first row of `rows`)."""
    values = []
    for i, t in enumerate(types):
        column = rows.column(i).slice(0, 1)
        if column.null_count:
            values.append("null")
        else:
            values.append(str(as_array(V.to_text(column, t, 1), 1)[0].as_py()))
    return f"({', '.join(names)})=({', '.join(values)})"


def not_present(child: TableDef, con: ConstraintDef, parent: TableDef,
                keys: pa.Table) -> ForeignKeyViolation:
    """23503 for a referencing row without its referenced row (`keys`: child columns)."""
    types = [child.column(c).type for c in con.columns]
    return ForeignKeyViolation(
        f'insert or update on table "{child.name}" violates foreign key constraint '
        f'"{con.name}"',
        detail=f"Key {key_text(con.columns, keys, types)} is not present in table "
               f'"{parent.name}".',
        schema=child.schema, table=child.name, constraint=con.name)


def still_referenced(parent: TableDef, con: ConstraintDef, child: TableDef,
                     keys: pa.Table) -> ForeignKeyViolation:
    """23503 for a referenced key removed while `child` still references it."""
    types = [child.column(c).type for c in con.columns]
    return ForeignKeyViolation(
        f'update or delete on table "{parent.name}" violates foreign key constraint '
        f'"{con.name}" on table "{child.name}"',
        detail=f"Key {key_text(con.ref_columns, keys, types)} is still referenced from "
               f'table "{child.name}".',
        schema=child.schema, table=child.name, constraint=con.name)


def mixed_nulls(child: TableDef, con: ConstraintDef) -> ForeignKeyViolation:
    """23503 for a MATCH FULL key that is partly NULL."""
    return ForeignKeyViolation(
        f'insert or update on table "{child.name}" violates foreign key constraint '
        f'"{con.name}"',
        detail="MATCH FULL does not allow mixing of null and nonnull key values.",
        schema=child.schema, table=child.name, constraint=con.name)


# Keys ----------------------------------------------------------------------------------------


def key_index(parent: Table, con: ConstraintDef) -> int:
    """Which of the referenced table's unique keys the constraint's columns are."""
    wanted = set(con.ref_columns)
    for i, key in enumerate(parent.keys):
        if set(key.def_.columns) == wanted and len(key.def_.columns) == len(wanted):
            return i
    raise ForeignKeyViolation(  # DDL keeps the key; reached only after a damaged catalog
        f'there is no unique constraint matching given keys for referenced table '
        f'"{parent.def_.name}"', sqlstate="42830")


def complete_keys(con: ConstraintDef, rows: pa.Table) -> tuple[pa.Table, np.ndarray]:
    """The key columns of `rows` (child names) whose keys are checked, and their row
    positions: a key with a NULL is not (MATCH SIMPLE; MATCH FULL when all are NULL)."""
    cols = [rows.column(c) for c in con.columns]
    if not any(c.null_count for c in cols):
        return rows.select(list(con.columns)), np.arange(rows.num_rows)
    valid = np.ones(rows.num_rows, bool)
    for c in cols:
        valid &= np.asarray(pc.is_valid(c))
    return rows.select(list(con.columns)).filter(pa.array(valid)), np.flatnonzero(valid)


def first_mixed(con: ConstraintDef, rows: pa.Table) -> int | None:
    """MATCH FULL: the first row whose key mixes NULL and non-NULL values, or None."""
    if con.match != "f":
        return None
    cols = [rows.column(c) for c in con.columns]
    if not any(c.null_count for c in cols):
        return None
    valid = np.ones(rows.num_rows, bool)
    some = np.zeros(rows.num_rows, bool)
    for c in cols:
        ok = np.asarray(pc.is_valid(c))
        valid &= ok
        some |= ok
    mixed = np.flatnonzero(some & ~valid)
    return int(mixed[0]) if mixed.size else None


def as_parent(keys: pa.Table, con: ConstraintDef, parent: TableDef) -> pa.Table:
    """Child key columns renamed and cast to the referenced columns (for its key index)."""
    arrays = []
    for i, ref in enumerate(con.ref_columns):
        target = parent.column(ref).type.to_arrow()
        column = keys.column(i)
        arrays.append(column if column.type == target else pc.cast(column, target))
    return pa.Table.from_arrays(arrays, names=list(con.ref_columns))


def as_child(keys: pa.Table, con: ConstraintDef, child: TableDef) -> pa.Table:
    """Referenced key columns renamed and cast to the referencing columns (22003 for a new
    key ON UPDATE CASCADE cannot store in them)."""
    arrays = []
    for i, col in enumerate(con.columns):
        target = child.column(col).type.to_arrow()
        column = keys.column(i)
        try:
            arrays.append(column if column.type == target else pc.cast(column, target))
        except pa.ArrowInvalid:
            raise SqlVecError(f"{child.column(col).type.format()} out of range",
                              sqlstate="22003") from None
    return pa.Table.from_arrays(arrays, names=list(con.columns))


def fitting(keys: pa.Table, columns: tuple[str, ...], table: TableDef) -> np.ndarray | None:
    """Keys whose integers fit the narrower integer types of `table`'s `columns` (None: all
    do), so the cast to them cannot overflow."""
    out = None
    for i, ref in enumerate(columns):
        target = table.column(ref).type.to_arrow()
        column = keys.column(i)
        if not (pa.types.is_integer(target) and pa.types.is_integer(column.type)) or \
                column.type.bit_width <= target.bit_width:
            continue
        info = np.iinfo(target.to_pandas_dtype())
        values = np.asarray(column.to_numpy(zero_copy_only=False))
        ok = (values >= info.min) & (values <= info.max)
        if not ok.all():
            out = ok if out is None else out & ok
    return out


def _distinct(ids: np.ndarray) -> np.ndarray:
    """The distinct row ids, sorted: NumPy's `unique` hashes, several times slower than a
    sort for the thousands of ids a check locks."""
    ids = np.sort(ids)
    return ids[np.concatenate(([True], ids[1:] != ids[:-1]))]


def _changed(old: pa.Table, new: pa.Table, columns) -> np.ndarray:
    """Rows whose `columns` differ between old and new versions (NULL-aware)."""
    out = np.zeros(old.num_rows, bool)
    for c in columns:
        a, b = old.column(c), new.column(c)
        if a.type != b.type:
            b = pc.cast(b, a.type)
        same = pc.fill_null(pg_compare("equal", a, b), False)
        both_null = pc.and_(pc.is_null(a), pc.is_null(b))
        out |= ~np.asarray(pc.or_(same, both_null))
    return out


class Enforcer:
    """The foreign-key work of one statement (or of COMMIT's deferred checks)."""

    def __init__(self, store: Store, txn: Transaction, autocommit: bool,
                 waiting: Waiting | None = None) -> None:
        self.store = store
        self.txn = txn
        self.autocommit = autocommit
        # An autocommit statement's row-lock wait: its checks wait for blocks deleting (or
        # re-keying) the rows they find (`_key_share`). None: checks that never wait (at
        # commit, under the commit lock; ALTER's validation).
        self.waiting = waiting

    def deferred(self, con: ConstraintDef) -> bool:
        """Whether `con`'s check waits for COMMIT (never in autocommit)."""
        return not self.autocommit and is_deferred(self.txn, con)

    def _reads(self, table: Table) -> None:
        """Tell a block that its check reads `table`, a use of the table until the block
        ends (a schema change of it waits), as PostgreSQL's check takes a lock on it."""
        if self.txn.on_read is not None:
            self.txn.on_read(table.id)

    def present(self, parent: Table, con: ConstraintDef, keys: pa.Table,
                share: bool = False) -> np.ndarray:
        """Per key (child column order, no NULLs), whether the referenced table holds it:
        committed (not deleted by this transaction) or inserted by it. Index lookups only.
        `share`, in a block: the committed rows found are locked FOR KEY SHARE (`_key_share`)."""
        self._reads(parent)
        fits = fitting(keys, con.ref_columns, parent.def_)
        if fits is not None:  # a bigint beyond the referenced integer type is in no row
            out = np.zeros(keys.num_rows, bool)
            if fits.any():
                out[fits] = self.present(parent, con, keys.filter(pa.array(fits)), share)
            return out
        rows = as_parent(keys, con, parent.def_)
        i = key_index(parent, con)
        overlay = self.txn.table_overlay(parent.id)
        while True:
            held = parent.find_keys(rows, i) if overlay is None else \
                overlay.committed_holders(rows, i)
            try:
                if share:
                    self._key_share(parent, held)
                break
            except RowChanged:  # changed since found: look its key up again
                self.store.settle()
        found = held != MISSING
        if overlay is not None:
            found |= overlay.own_keys(i).lookup(parent.key_values(rows, i)) != MISSING
        return found

    def _key_share(self, parent: Table, held: np.ndarray) -> None:
        """Lock the referenced rows new rows found FOR KEY SHARE, as PostgreSQL's check does:
        in a block until it ends, so a DELETE of one (or an UPDATE of its key) waits, then
        fails on the new referencing row; an UPDATE of other columns does not. A statement
        outside a block waits for the blocks holding such a row for a DELETE or key UPDATE
        (`RowChanged` then: the key is looked up again); its commit's check does the rest."""
        found = held[held != MISSING]
        if not found.size:
            return
        locks = self.txn.locks
        if locks is not None:
            locks.lock(parent, _distinct(found), mode=KEY_SHARE)
        elif self.waiting is not None and parent.row_locks and \
                wait_unlocked(parent, found.tolist(), KEY_SHARE, self.waiting):
            raise RowChanged()

    def referencing_rows(self, child: Table, con: ConstraintDef, keys: pa.Table,
                         columns: list[str] | None) -> pa.Table:
        """The child's live rows (as this transaction sees them) whose key is one of `keys`
        (child names and types), with `columns` (None: all) and their row ids. Scans the
        child's key columns one segment at a time (see the module docstring)."""
        self._reads(child)
        d = child.def_
        names = list(con.columns)
        wanted = as_child(keys, con, d) if keys.column_names != names else keys
        wanted = wanted.group_by(names).aggregate([])  # distinct keys
        read = None if columns is None else list(dict.fromkeys(names + columns))
        snapshot = child.snapshot()
        overlay = self.txn.table_overlay(child.id)
        parts = []
        if overlay is None or not overlay.truncated:
            dead = pa.array(sorted(overlay.deleted), pa.int64()) \
                if overlay is not None and overlay.deleted else None
            for part in snapshot.scan(read, with_rowid=True):
                if dead is not None:
                    part = part.filter(pc.invert(pc.is_in(part.column(ROWID), value_set=dead)))
                parts.append(part)
        ins = overlay.inserted_table() if overlay is not None else None
        if ins is not None:
            parts.append(ins.select((read or d.column_names) + [ROWID]))
        found = []
        for part in parts:
            if part.num_rows == 0:
                continue
            # Joined on the key columns alone: Arrow's joins carry no vector (list) column.
            positioned = part.select(names).append_column(
                "__fk_row", pa.array(np.arange(part.num_rows, dtype=np.int64)))
            rows = positioned.join(wanted, keys=names, join_type="left semi")
            hit = part.take(np.sort(np.asarray(rows.column("__fk_row"))))
            if hit.num_rows:
                found.append(hit)
        if not found:
            schema = pa.schema([(c, d.column(c).type.to_arrow())
                                for c in (read or d.column_names)] + [(ROWID, pa.int64())])
            return schema.empty_table()
        schema = found[0].schema
        return pa.concat_tables([f.cast(schema) if not f.schema.equals(schema) else f
                                 for f in found])

    # The statement's record --------------------------------------------------------------------

    def run(self, changes: list[tuple[str, Table, pa.Table]]) -> None:
        """Check and act on a statement's record of writes, in order; a delete followed by
        an insert of as many rows into the same table is an UPDATE (old, new versions)."""
        i = 0
        while i < len(changes):  # actions append to `changes` as they write
            kind, table, rows = changes[i]
            if kind == "d" and i + 1 < len(changes) and changes[i + 1][0] == "i" and \
                    changes[i + 1][1] is table and changes[i + 1][2].num_rows == rows.num_rows:
                new = changes[i + 1][2]
                self.removed(table, rows, new)
                self.inserted(table, new, rows)
                i += 2
                continue
            if kind == "d":
                self.removed(table, rows, None)
            else:
                self.inserted(table, rows, None)
            i += 1

    def inserted(self, table: Table, rows: pa.Table, old: pa.Table | None) -> None:
        """New rows of a referencing table: their keys must be present (`old`: the versions
        an UPDATE replaced, in the same order)."""
        d = table.def_
        for con in d.constraints:
            if con.kind != "f" or rows.num_rows == 0 or con.ref_table not in self.store.tables:
                continue
            check = rows
            if old is not None:
                moved = _changed(old, rows, con.columns)
                if not moved.any():
                    continue
                check = rows.filter(pa.array(moved))
            if self.deferred(con):
                keys, _ = complete_keys(con, check)
                if first_mixed(con, check) is not None:
                    raise mixed_nulls(d, con)
                if keys.num_rows or old is None:  # (an inserted NULL key is queued too, as
                    # PostgreSQL queues every inserted row's check: the table's are pending)
                    self.txn.deferred_checks.append(("child", table.id, con.name, keys))
                continue
            self.check_present(d, con, check)

    def check_present(self, d: TableDef, con: ConstraintDef, rows: pa.Table) -> None:
        """Every row's key is in the referenced table (or has a NULL): 23503 for the first
        row that fails, as PostgreSQL's row-by-row check would report."""
        keys, positions = complete_keys(con, rows)
        mixed = first_mixed(con, rows)
        bad = None
        if keys.num_rows:
            parent = self.store.tables[con.ref_table]  # type: ignore[index]
            ok = self.present(parent, con, keys, share=True)
            if not ok.all():
                bad = int(np.flatnonzero(~ok)[0])
        if mixed is not None and (bad is None or mixed < positions[bad]):
            raise mixed_nulls(d, con)
        if bad is not None:
            raise not_present(d, con, parent.def_, keys.slice(bad, 1))

    def removed(self, parent: Table, old: pa.Table, new: pa.Table | None) -> None:
        """Rows gone from a possibly referenced table (`new`: their new versions, for an
        UPDATE): the keys no longer present trigger each referencing constraint's action."""
        refs = [(t, c) for t in list(self.store.tables.values()) for c in t.def_.constraints
                if c.kind == "f" and c.ref_table == parent.id]
        for child, con in refs:
            gone = old
            if new is not None:
                moved = _changed(old, new, con.ref_columns)
                if not moved.any():
                    continue
                gone = old.filter(pa.array(moved))
                new_moved = new.filter(pa.array(moved))
            keys = gone.select(list(con.ref_columns))
            valid = None
            for c in keys.columns:
                if c.null_count:
                    ok = np.asarray(pc.is_valid(c))
                    valid = ok if valid is None else valid & ok
            if valid is not None:
                keys = keys.filter(pa.array(valid))
                if new is not None:
                    new_moved = new_moved.filter(pa.array(valid))
            fits = fitting(keys, con.columns, child.def_)
            if fits is not None:  # a key too wide for the referencing columns: unreferenced
                keys = keys.filter(pa.array(fits))
                if new is not None:
                    new_moved = new_moved.filter(pa.array(fits))
            if keys.num_rows == 0:
                continue
            keys = as_child(keys, con, child.def_)
            action = con.on_update if new is not None else con.on_delete
            if action in ("a", "r"):
                if action == "a":
                    still = self.present(parent, con, keys)
                    keys = keys.filter(pa.array(~still))
                    if keys.num_rows == 0:
                        continue
                    if self.deferred(con):
                        self.txn.deferred_checks.append(("parent", child.id, con.name, keys))
                        continue
                found = self.referencing_rows(child, con, keys, [])
                if found.num_rows:
                    # RESTRICT fails as NO ACTION does, only without waiting (PostgreSQL
                    # 16 reports both alike; 18 gives RESTRICT a 23001 of its own).
                    raise still_referenced(parent.def_, con, child.def_,
                                           found.select(list(con.columns)))
                continue
            found = self.referencing_rows(child, con, keys, None)
            if found.num_rows == 0:
                continue
            ids = found.column(ROWID).to_numpy()
            if action == "c" and new is None:
                self.txn.delete(child, ids)
                continue
            rows = found.drop_columns([ROWID])
            if action == "c":
                rows = self._with_new_keys(rows, con, child.def_, keys,
                                           as_child(new_moved.select(list(con.ref_columns)),
                                                    con, child.def_))
            else:
                columns = (con.delete_set_columns if new is None else ()) or con.columns
                rows = self._with_defaults(rows, columns, child.def_, action == "n")
                if action == "d":  # a default that is the removed key still references it
                    again, _ = complete_keys(con, rows)
                    if again.num_rows and again.join(keys, keys=list(con.columns),
                                                     join_type="left semi").num_rows:
                        raise still_referenced(parent.def_, con, child.def_, again)
            self.txn.delete(child, ids)
            self.txn.insert(child, child.coerce(rows))

    def _with_new_keys(self, rows: pa.Table, con: ConstraintDef, child: TableDef,
                       old_keys: pa.Table, new_keys: pa.Table) -> pa.Table:
        """ON UPDATE CASCADE: each row's key replaced by the new key of the referenced row."""
        names = list(con.columns)
        mapping = old_keys.append_column("__fk_pos", pa.array(np.arange(old_keys.num_rows)))
        positioned = rows.append_column("__fk_row", pa.array(np.arange(rows.num_rows)))
        joined = positioned.select(names + ["__fk_row"]).join(mapping, keys=names)
        order = np.asarray(joined.column("__fk_row"))
        where = np.asarray(joined.column("__fk_pos"))
        take = np.empty(rows.num_rows, np.int64)
        take[order] = where
        for name in names:
            i = rows.column_names.index(name)
            rows = rows.set_column(i, name, new_keys.column(name).take(pa.array(take)))
        return rows

    def _with_defaults(self, rows: pa.Table, columns: tuple[str, ...], child: TableDef,
                       nulls: bool) -> pa.Table:
        """ON ... SET NULL / SET DEFAULT: the key columns (or those listed) set to NULL or
        their defaults."""
        n = rows.num_rows
        for name in columns:
            col = child.column(name)
            arrow = col.type.to_arrow()
            if nulls or col.default is None:
                value = pa.nulls(n, arrow)
            else:
                compiler = Compiler(Scope([]), [], CompileEnv(functions=ROW_CHECKS.functions()))
                default = compiler.compile_as(bind_expr(
                    parse_one(f"SELECT {col.default}").expressions[0], Scope([])), col.type)
                value = as_array(default(Frame(table_of([], n), ExecContext())), n)
                if value.type != arrow:
                    value = value.cast(arrow)
            i = rows.column_names.index(name)
            rows = rows.set_column(i, name, value)
        return rows
