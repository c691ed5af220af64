"""A COPY's rows logged piece by piece while they arrive, before the commit that names them
(`Store.log_piece`, `InsertRunOp` of logged batches): what recovery and followers make of the
log around checkpoints that run meanwhile, and of a COPY that never commits."""

from __future__ import annotations

import shutil

import numpy as np
import pyarrow as pa
import pytest

from sqlvec.errors import DataCorrupted
from sqlvec.memory import KeptMemory
from sqlvec.session import copy as copy_engine
from sqlvec.storage.follower import FollowerStore
from sqlvec.storage.schema import ColumnDef
from sqlvec.storage.store import Store, StoreOptions
from sqlvec.storage.wal import (
    EncodedBatch,
    HeldPieces,
    InsertOp,
    InsertRunOp,
    LoggedRunOp,
    RunPieceOp,
    decode_commit,
    encode_abort,
    encode_piece,
    serialized_size,
    wal_files,
)
from sqlvec.types import SqlType

DIM = 4


def options() -> StoreOptions:
    # Tiny WAL files: each record gets a file of its own, so a checkpoint that forgot the
    # pieces would delete them.
    return StoreOptions(background=False, fsync=False, seal_rows=10_000,
                        wal_segment_bytes=1024)


def create(store: Store, name: str) -> int:
    cols = [ColumnDef("id", SqlType.parse("int8"), 0),
            ColumnDef("v", SqlType.parse(f"vector({DIM})"), 0)]
    return store.create_table(name, cols, primary_key=["id"]).id


def piece(store: Store, table_id: int, ids) -> EncodedBatch:
    ids = np.asarray(ids, dtype=np.int64)
    flat = pa.array(np.repeat(ids.astype(np.float32), DIM))
    batch = pa.RecordBatch.from_arrays(
        [pa.array(ids), pa.FixedSizeListArray.from_arrays(flat, DIM)],
        schema=store.table(table_id).run_schema())
    return EncodedBatch.of(batch)


def log_pieces(store: Store, table_id: int, chunks, first: int | None = None):
    """Log each chunk of ids as a piece; (the COPY's first piece LSN, the logged batches)."""
    logged = []
    for ids in chunks:
        part = store.log_piece(table_id, piece(store, table_id, ids), first)
        store.sync_log(part.lsn)
        first = part.lsn if first is None else first
        logged.append(part)
    return first, logged


def ids_of(store, table_id: int) -> list[int]:
    table = store.table(table_id)
    return sorted(table.snapshot().to_table(["id"]).column("id").to_pylist())


def crash_copy(directory, tmp_path) -> str:
    """The directory as a crash would leave it (the log is durable as it is)."""
    image = str(tmp_path / "image")
    shutil.copytree(directory, image)
    return image


def other_commit(store: Store, table_id: int, ids) -> None:
    ids = np.asarray(ids, dtype=np.int64)
    store.commit([InsertOp(table_id, pa.table({
        "id": ids, "v": pa.FixedSizeListArray.from_arrays(
            pa.array(np.zeros(len(ids) * DIM, np.float32)), DIM)}))])


def test_a_copy_logged_ahead_survives_checkpoints_before_and_after_its_commit(tmp_path):
    directory = str(tmp_path / "db")
    store = Store.open(directory, options())
    target, other = create(store, "t"), create(store, "o")
    first, logged = log_pieces(store, target, [range(0, 5)])
    other_commit(store, other, [1])
    store.checkpoint()  # the target is empty: its checkpoint passes the first piece
    _, more = log_pieces(store, target, [range(5, 9), range(9, 12)], first)
    lsn = store.commit([InsertRunOp.start(target, logged + more)])
    store.end_run(first, [p.lsn for p in logged + more], lsn)
    other_commit(store, other, [2])
    store.seal(other)  # a manifest while the run's rows are only in the log
    assert ids_of(store, target) == list(range(12))
    assert min(f for f, _ in wal_files(directory + "/wal")) <= first

    reopened = Store.open(crash_copy(directory, tmp_path), options())
    assert ids_of(reopened, target) == list(range(12))
    assert reopened.table(target).next_rowid >= 12
    with pytest.raises(Exception, match="duplicate key"):
        other_commit(reopened, target, [11])
    reopened.close()

    store.checkpoint()  # the rows are in a segment now: the log need not go back that far
    assert "log_from" not in store._manifests.load_latest().body
    store.close()


def test_pieces_of_a_copy_that_never_commits_show_nothing(tmp_path):
    directory = str(tmp_path / "db")
    store = Store.open(directory, options())
    target = create(store, "t")
    first, logged = log_pieces(store, target, [range(0, 5), range(5, 8)])
    store.checkpoint()
    assert store._manifests.load_latest().body["log_from"] == first - 1
    image = crash_copy(directory, tmp_path)  # killed mid-COPY
    store.end_run(first, [p.lsn for p in logged], None)  # the COPY failed
    other_commit(store, target, [100])
    assert ids_of(store, target) == [100]
    store.checkpoint()
    assert "log_from" not in store._manifests.load_latest().body
    store.close()

    reopened = Store.open(image, options())
    assert ids_of(reopened, target) == []
    other_commit(reopened, target, [3])  # its rows never held a key either
    assert ids_of(reopened, target) == [3]
    reopened.close()


def test_a_follower_sees_a_logged_copy_when_its_commit_comes(tmp_path):
    directory = str(tmp_path / "db")
    writer = Store.open(directory, options())
    target = create(writer, "t")
    first, logged = log_pieces(writer, target, [range(0, 4)])
    writer.checkpoint()
    follower = FollowerStore.open(directory, options())
    assert ids_of(follower, target) == []
    _, more = log_pieces(writer, target, [range(4, 6)], first)
    follower.catch_up(writer.durable_lsn)
    assert ids_of(follower, target) == []  # pieces are part of no table yet
    lsn = writer.commit([InsertRunOp.start(target, logged + more)])
    writer.end_run(first, [p.lsn for p in logged + more], lsn)
    follower.catch_up(writer.durable_lsn)
    assert ids_of(follower, target) == list(range(6))
    late = FollowerStore.open(directory, options())  # from the manifest, before the pieces
    assert ids_of(late, target) == list(range(6))
    for store in (late, follower, writer):
        store.close()


def test_held_pieces_make_the_insert_a_logged_run_names():
    schema = pa.schema([("id", pa.int64())])
    parts = [EncodedBatch.of(pa.RecordBatch.from_arrays([pa.array(ids, pa.int64())],
                                                        schema=schema))
             for ids in ([1, 2], [3], [4, 5, 6])]
    held = HeldPieces()
    for lsn, part in zip((10, 12, 11), parts):
        (op,) = decode_commit(b"".join(bytes(b) for b in encode_piece(7, part).buffers))
        assert isinstance(op, RunPieceOp) and op.batch.equals(part.batch)
        assert held.resolve(lsn, [op]) == []
    run = InsertRunOp(7, tuple(EncodedBatch(p.batch, p.message, p.crc, lsn)
                               for p, lsn in zip(parts, (10, 12, 11))), first_rowid=100)
    from sqlvec.storage.wal import encode_commit

    (named,) = decode_commit(encode_commit([run]))
    assert named == LoggedRunOp(7, 100, (10, 12, 11))
    (insert,) = held.resolve(13, [named])
    assert insert.batch.column(0).to_pylist() == [100, 101, 102, 103, 104, 105]
    assert insert.batch.column(1).to_pylist() == [1, 2, 3, 4, 5, 6]  # not in LSN order
    assert len(held) == 0
    # pieces not held (gone before replay began) leave the run unresolved
    assert isinstance(held.resolve(14, [named])[0], LoggedRunOp)
    held.resolve(20, decode_commit(b"".join(bytes(b) for b in encode_piece(7, parts[0]).buffers)))
    held.resolve(21, decode_commit(encode_abort(7, [20])))
    assert len(held) == 0


def test_held_pieces_of_a_run_no_table_applies_are_let_go_unjoined():
    schema = pa.schema([("id", pa.int64())])
    part = EncodedBatch.of(pa.RecordBatch.from_arrays([pa.array([1, 2], pa.int64())],
                                                      schema=schema))
    held = HeldPieces()
    (op,) = decode_commit(b"".join(bytes(b) for b in encode_piece(7, part).buffers))
    held.resolve(10, [op])
    assert held.resolve(11, [LoggedRunOp(7, 0, (10,))], wanted=False) == []
    assert len(held) == 0


def test_a_follower_does_not_read_back_the_copy_of_a_table_dropped_since(tmp_path, monkeypatch):
    """A worker loads each manifest as it is published; the one of a DROP after a COPY left
    it with no table needing the COPY's records, yet it read (checksummed, decoded, joined)
    every piece: 0.6-0.8 s of CPU per worker beside the next COPY in the suite."""
    from sqlvec.storage.wal import LogReader

    directory = str(tmp_path / "db")
    writer = Store.open(directory, StoreOptions(background=False, fsync=False,
                                                seal_rows=10_000))
    follower = FollowerStore.open(directory, options())
    target = create(writer, "t")
    follower.follow_manifest(writer.manifest_version)
    first, logged = log_pieces(writer, target, [range(i, i + 5) for i in range(0, 50, 5)])
    lsn = writer.commit([InsertRunOp.start(target, logged)])
    writer.end_run(first, [p.lsn for p in logged], lsn)
    writer.drop_table(target)
    read = []
    whole = LogReader._read_frame

    def counted(self):
        record = whole(self)
        read.append(record)
        return record

    monkeypatch.setattr(LogReader, "_read_frame", counted)
    assert follower.follow_manifest(writer.manifest_version)
    assert not follower.tables and follower.applied_lsn >= lsn
    assert [r for r in read if r is not None] == []
    kept = create(writer, "k")  # the log after it is followed as before
    other_commit(writer, kept, [1, 2])
    follower.catch_up(writer.durable_lsn)
    assert ids_of(follower, kept) == [1, 2]
    follower.close()
    writer.close()


def test_a_piece_serialized_into_kept_memory_is_the_same_message(tmp_path):
    """Into memory kept between COPYs the message is byte for byte `serialize()`'s, and is
    logged and replayed as one; a buffer too small for it leaves it to `serialize()`."""
    directory = str(tmp_path / "db")
    store = Store.open(directory, options())
    target = create(store, "t")
    plain = piece(store, target, range(50))
    buffer = KeptMemory(1 << 16, most=1).take()
    into = EncodedBatch.of(plain.batch, buffer)
    assert into.message.address == pa.py_buffer(buffer).address + len(
        plain.batch.schema.serialize())
    assert into.message.equals(plain.message) and into.crc == plain.crc
    small = KeptMemory(plain.message.size, most=1).take()
    assert EncodedBatch.of(plain.batch, small).message.equals(plain.message)
    part = store.log_piece(target, into, None)
    store.end_run(part.lsn, [part.lsn], store.commit([InsertRunOp.start(target, [part])]))
    replayed = Store.open(crash_copy(directory, tmp_path), options())
    assert ids_of(replayed, target) == list(range(50))
    replayed.close()
    store.close()


def test_pieces_share_kept_buffers_one_after_another(monkeypatch):
    """A COPY's piece messages go one after another into kept buffers, a new one taken when
    the rest of the last is too small: each is byte for byte `serialize()`'s, none overlaps
    another, a buffer goes back for the next COPY only once nothing refers to it, and a piece
    staged after the COPY gave its memory back gets none."""
    kept = KeptMemory(copy_engine.PIECE_MEMORY, most=8)
    monkeypatch.setattr(copy_engine, "_pieces_memory", kept)
    memory = copy_engine.PieceMemory()
    rng = np.random.default_rng(0)
    batches = [pa.RecordBatch.from_arrays([pa.array(rng.random(n, np.float32))], ["v"])
               for n in [300_000, 7, 200_000, 250_000, 1, 600_000, 120_000]]
    parts = [EncodedBatch.of(b, memory.region(serialized_size(b))) for b in batches]
    spans = sorted((p.message.address, p.message.address + p.message.size) for p in parts)
    assert all(end <= start for (_, end), (start, _) in zip(spans, spans[1:]))
    assert all(p.message.equals(b.serialize()) for p, b in zip(parts, batches))
    assert memory.region(copy_engine.PIECE_MEMORY + 1) is None
    assert len(memory._buffers) == 2  # 5.9 MB of messages in two 5 MiB buffers
    last = parts[-1]
    del parts, spans
    memory.release()
    assert kept.kept == 1  # the buffer the last message lies in is still referred to
    assert last.message.equals(batches[-1].serialize())
    # A piece still decoding when its COPY ended gets no kept memory (the next COPY's now).
    assert memory.region(16) is None and not memory._buffers
    late = EncodedBatch.of(batches[1], memory.region(serialized_size(batches[1])))
    assert late.message.equals(batches[1].serialize()) and kept.kept == 1


def test_replay_refuses_a_commit_whose_pieces_are_gone(tmp_path):
    from sqlvec.storage.store import apply_logged

    directory = str(tmp_path / "db")
    store = Store.open(directory, options())
    target = create(store, "t")
    with pytest.raises(DataCorrupted, match="piece records"):
        apply_logged(store.applied_lsn + 1, [LoggedRunOp(target, 0, (1,))], store.tables)
    store.close()


def joiner_batches(dim: int, value_type: pa.DataType, chunks, nulls_in: int | None = None):
    schema = pa.schema([("id", pa.int64()), ("tag", pa.string()),
                        ("v", pa.list_(pa.field("item", value_type), dim))])
    out, expected_ids = [], []
    for k, ids in enumerate(chunks):
        ids = np.asarray(ids, dtype=np.int64)
        flat = pa.array(np.repeat(ids, dim).astype(value_type.to_pandas_dtype()))
        mask = pa.array(ids % 3 == 0) if k == nulls_in else None
        vectors = pa.FixedSizeListArray.from_arrays(flat, type=schema.field("v").type, mask=mask)
        out.append(pa.RecordBatch.from_arrays(
            [pa.array(ids), pa.array([f"t{i}" for i in ids]), vectors], schema=schema))
        expected_ids += ids.tolist()
    return schema, out, expected_ids


@pytest.mark.parametrize("value_type", [pa.float32(), pa.float16()], ids=["vector", "halfvec"])
@pytest.mark.parametrize("nulls_in", [None, 2], ids=["no NULL", "NULL vectors"])
def test_a_run_joiner_joins_pieces_in_row_order_as_they_come(value_type, nulls_in):
    from sqlvec.session.copy import RunJoiner

    # 1 MiB to start with: 3,000 rows of 128 float32 make it grow (in place) twice
    chunks = [range(0, 1000), range(1000, 2500), range(2500, 2600), range(2600, 3000)]
    schema, batches, ids = joiner_batches(128, value_type, chunks, nulls_in)
    joiner = RunJoiner(schema)
    for index in (2, 0, 3):
        joiner.add(index, batches[index])
    assert joiner.batch(4) is None  # piece 1 is missing
    joiner.add(1, batches[1])
    assert joiner.batch(3) is None  # more pieces than the run has
    joined = joiner.batch(4)
    assert joined.equals(pa.concat_batches(batches))
    assert joined.column("id").to_pylist() == ids
    assert joined.column("v").null_count == (33 if nulls_in else 0)  # 2502, 2505, ... 2598


def test_a_copy_whose_piece_a_full_disk_lost_fails_and_shows_nothing(tmp_path, monkeypatch):
    import errno

    from sqlvec.errors import SqlVecError
    from tests.sqlvec.storage.faults import FaultyDisk

    directory = str(tmp_path / "db")
    store = Store.open(directory, StoreOptions(background=False, fsync=True, seal_rows=10_000))
    target = create(store, "t")
    disk = FaultyDisk(monkeypatch)
    first, logged = log_pieces(store, target, [range(0, 5)])
    disk.write_error = errno.ENOSPC
    lost = store.log_piece(target, piece(store, target, range(5, 9)), first)
    with pytest.raises(SqlVecError) as failed:
        store.sync_log(lost.lsn)
    assert failed.value.sqlstate == "53100"
    disk.write_error = None  # space again: the log is repaired, the lost piece is gone
    with pytest.raises(SqlVecError) as refused:
        store.commit([InsertRunOp.start(target, logged + [lost])])
    assert refused.value.sqlstate == "53100"
    store.end_run(first, [p.lsn for p in logged + [lost]], None)
    other_commit(store, target, [7])  # the LSN the lost piece had now holds this commit
    assert ids_of(store, target) == [7]
    store.close()
    reopened = Store.open(directory, options())
    assert ids_of(reopened, target) == [7]
    reopened.close()
