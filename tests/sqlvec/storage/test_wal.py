from __future__ import annotations

import datetime as dt
import decimal
import errno
import logging
import os
import struct
import tempfile
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sqlvec.errors import DataCorrupted, DiskFull, IoError
from sqlvec.storage import wal as wal_module
from sqlvec.storage.wal import (
    DeleteOp,
    EncodedBatch,
    EncodedPayload,
    InsertOp,
    InsertRunOp,
    RowInsertOp,
    TruncateOp,
    WriteAheadLog,
    crc32_combine,
    decode_commit,
    encode_commit,
    truncate_log,
)
from tests.sqlvec.storage.faults import FaultyDisk

HEADER = 12  # magic + version
FRAME = 24  # length + lsn + synced + crc


def wal_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.wal"))


def write_log(directory: Path, payloads: list[bytes], **kwargs) -> None:
    with WriteAheadLog.open(directory, fsync=False, **kwargs) as wal:
        for payload in payloads:
            wal.append(payload)


def read_log(directory: Path, after_lsn: int = 0) -> list[tuple[int, bytes]]:
    with WriteAheadLog.open(directory, fsync=False) as wal:
        return list(wal.replay(after_lsn))


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


# -- framing ---------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    payloads=st.lists(st.binary(max_size=64), max_size=30),
    segment_bytes=st.sampled_from([64, 200, 1 << 20]),
    data=st.data(),
)
def test_append_reopen_replay_roundtrip(payloads, segment_bytes, data):
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "wal"
        with WriteAheadLog.open(directory, fsync=False, segment_bytes=segment_bytes) as wal:
            lsns = [wal.append(p) for p in payloads]
            wal.sync(wal.last_lsn)
            assert wal.durable_lsn == len(payloads)
        assert lsns == list(range(1, len(payloads) + 1))

        with WriteAheadLog.open(directory, fsync=False, segment_bytes=segment_bytes) as wal:
            assert wal.last_lsn == len(payloads)
            expected = list(zip(lsns, payloads))
            assert list(wal.replay()) == expected
            after = data.draw(st.integers(0, len(payloads) + 1))
            assert list(wal.replay(after)) == expected[after:]
            assert wal.append(b"next") == len(payloads) + 1


def test_empty_directory_starts_at_lsn_1(tmp_path):
    with WriteAheadLog.open(tmp_path / "wal") as wal:
        assert wal.last_lsn == 0 and wal.durable_lsn == 0
        assert list(wal.replay()) == []
        assert wal.commit(b"a") == 1
        assert wal.durable_lsn == 1
    assert [p.name for p in wal_files(tmp_path / "wal")] == ["00000000000000000001.wal"]


def test_sync_beyond_last_lsn_is_an_error(tmp_path):
    with WriteAheadLog.open(tmp_path, fsync=False) as wal:
        wal.append(b"x")
        with pytest.raises(ValueError):
            wal.sync(2)
    with pytest.raises(ValueError):
        wal.append(b"closed")


@pytest.mark.parametrize("sizes", [[5, 0, 7], [3, 40], [0]])
def test_torn_tail_at_every_offset(tmp_path, caplog, sizes):
    payloads = [bytes([i + 1]) * n for i, n in enumerate(sizes)]
    last_start = HEADER + sum(FRAME + len(p) for p in payloads[:-1])
    full = last_start + FRAME + len(payloads[-1])
    for cut in range(last_start + 1, full):
        directory = tmp_path / f"cut{cut}"
        write_log(directory, payloads)
        (path,) = wal_files(directory)
        assert path.stat().st_size == full
        os.truncate(path, cut)

        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="sqlvec.wal"):
            with WriteAheadLog.open(directory, fsync=False) as wal:
                assert wal.last_lsn == len(payloads) - 1
                assert [p for _, p in wal.replay()] == payloads[:-1]
                assert path.stat().st_size == last_start
                assert wal.commit(b"after") == len(payloads)
        warnings = [r.getMessage() for r in caplog.records if r.name == "sqlvec.wal"]
        assert len(warnings) == 1
        assert str(path) in warnings[0]
        assert f"offset {last_start}" in warnings[0]
        assert f"{cut - last_start} bytes dropped" in warnings[0]

        caplog.clear()
        assert [p for _, p in read_log(directory)] == [*payloads[:-1], b"after"]
        assert not [r for r in caplog.records if r.name == "sqlvec.wal"]


def test_torn_file_header_is_rewritten(tmp_path, caplog):
    write_log(tmp_path, [b"a", b"b", b"c"], segment_bytes=40)
    files = wal_files(tmp_path)
    assert len(files) == 3
    os.truncate(files[-1], 5)
    with caplog.at_level(logging.WARNING, logger="sqlvec.wal"):
        with WriteAheadLog.open(tmp_path, fsync=False) as wal:
            assert wal.last_lsn == 2
            assert wal.append(b"c2") == 3
    assert any(str(files[-1]) in r.getMessage() for r in caplog.records)
    assert read_log(tmp_path) == [(1, b"a"), (2, b"b"), (3, b"c2")]


def test_header_only_newest_file_keeps_lsns_monotonic(tmp_path):
    write_log(tmp_path, [b"a", b"b"])
    (tmp_path / "00000000000000000003.wal").write_bytes(b"SQLVWAL\x00\x01\x00\x00\x00")
    with WriteAheadLog.open(tmp_path, fsync=False) as wal:
        assert wal.last_lsn == 2
        assert wal.append(b"c") == 3
        wal.truncate_before(3)
    assert [p.name for p in wal_files(tmp_path)] == ["00000000000000000003.wal"]
    with WriteAheadLog.open(tmp_path, fsync=False) as wal:
        assert wal.last_lsn == 3
        assert list(wal.replay()) == [(3, b"c")]


def test_flipped_byte_in_last_record_is_truncated(tmp_path, caplog):
    payloads = [b"first", b"second", b"third"]
    write_log(tmp_path, payloads)
    (path,) = wal_files(tmp_path)
    last_start = HEADER + sum(FRAME + len(p) for p in payloads[:-1])
    flip_byte(path, last_start + FRAME + 2)
    with caplog.at_level(logging.WARNING, logger="sqlvec.wal"):
        assert read_log(tmp_path) == [(1, b"first"), (2, b"second")]
    (record,) = [r for r in caplog.records if r.name == "sqlvec.wal"]
    assert "CRC mismatch" in record.getMessage() and str(path) in record.getMessage()
    assert path.stat().st_size == last_start


def test_flipped_byte_in_older_file_is_corruption(tmp_path):
    write_log(tmp_path, [b"a" * 10, b"b" * 10, b"c" * 10], segment_bytes=40)
    files = wal_files(tmp_path)
    assert len(files) == 3
    flip_byte(files[1], HEADER + FRAME + 3)
    with pytest.raises(DataCorrupted) as info:
        WriteAheadLog.open(tmp_path, fsync=False)
    assert str(files[1]) in info.value.message
    assert f"offset {HEADER}" in info.value.message
    assert files[1].stat().st_size == HEADER + FRAME + 10  # left untouched


def test_torn_record_in_older_file_is_corruption(tmp_path):
    write_log(tmp_path, [b"a" * 10, b"b" * 10], segment_bytes=40)
    first = wal_files(tmp_path)[0]
    os.truncate(first, HEADER + 5)
    with pytest.raises(DataCorrupted, match=str(first)):
        WriteAheadLog.open(tmp_path, fsync=False)


@pytest.mark.parametrize(
    "header, message",
    [(b"NOTAWAL\x00\x01\x00\x00\x00", "bad header"), (b"SQLVWAL\x00\x09\x00\x00\x00", "version 9")],
)
def test_bad_file_header_is_corruption(tmp_path, header, message):
    write_log(tmp_path, [b"a"])
    (path,) = wal_files(tmp_path)
    path.write_bytes(header + path.read_bytes()[HEADER:])
    with pytest.raises(DataCorrupted, match=message) as info:
        WriteAheadLog.open(tmp_path, fsync=False)
    assert str(path) in info.value.message


def test_gap_between_files_is_corruption(tmp_path):
    write_log(tmp_path, [b"a" * 10] * 3, segment_bytes=40)
    files = wal_files(tmp_path)
    files[1].unlink()
    with pytest.raises(DataCorrupted, match=str(files[2])):
        WriteAheadLog.open(tmp_path, fsync=False)


def test_rotation_replay_and_truncate_before(tmp_path):
    payloads = [bytes([i]) * 20 for i in range(1, 11)]
    # 12 + 2 * 44 = 100 bytes: two records per file.
    with WriteAheadLog.open(tmp_path, fsync=True, segment_bytes=100) as wal:
        for p in payloads:
            wal.append(p)
        wal.sync(wal.last_lsn)
        assert wal.stats["rotations"] == 4
    names = [p.name for p in wal_files(tmp_path)]
    assert names == [f"{first:020d}.wal" for first in (1, 3, 5, 7, 9)]
    assert all(p.stat().st_size <= 100 for p in wal_files(tmp_path))

    with WriteAheadLog.open(tmp_path, fsync=False, segment_bytes=100) as wal:
        assert list(wal.replay()) == list(enumerate(payloads, start=1))
        assert [lsn for lsn, _ in wal.replay(4)] == [5, 6, 7, 8, 9, 10]
        wal.truncate_before(5)  # files 1-2 and 3-4 are covered; 5-6 holds LSN 6 > 5
        assert [p.name for p in wal_files(tmp_path)][0] == f"{5:020d}.wal"
        wal.truncate_before(100)  # never the file being appended to
        assert [p.name for p in wal_files(tmp_path)] == [f"{9:020d}.wal"]
        assert list(wal.replay()) == [(9, payloads[8]), (10, payloads[9])]
        assert wal.append(b"more") == 11
    with WriteAheadLog.open(tmp_path, fsync=False, segment_bytes=100) as wal:
        assert [lsn for lsn, _ in wal.replay()] == [9, 10, 11]


def test_oversized_record_gets_a_file_of_its_own(tmp_path):
    with WriteAheadLog.open(tmp_path, fsync=False, segment_bytes=50) as wal:
        for p in (b"x" * 100, b"y" * 100, b"z"):
            wal.append(p)
    assert len(wal_files(tmp_path)) == 3
    assert [p for _, p in read_log(tmp_path)] == [b"x" * 100, b"y" * 100, b"z"]


# -- group commit ----------------------------------------------------------------------------


def test_group_commit_shares_fsyncs(tmp_path, monkeypatch):
    real_fsync = os.fsync

    def slow_fsync(fd):  # a disk-like latency makes commits overlap deterministically
        time.sleep(0.002)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", slow_fsync)
    monkeypatch.setattr(os, "fdatasync", slow_fsync)
    threads_n, per_thread = 8, 50
    results: list[list[int]] = [[] for _ in range(threads_n)]
    with WriteAheadLog.open(tmp_path, fsync=True, segment_bytes=4096) as wal:
        start = threading.Barrier(threads_n)

        def worker(i: int) -> None:
            start.wait()
            for j in range(per_thread):
                lsn = wal.commit(f"{i}:{j}".encode())
                assert wal.durable_lsn >= lsn
                results[i].append(lsn)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(threads_n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stats = wal.stats
    commits = threads_n * per_thread
    lsns = sorted(lsn for r in results for lsn in r)
    assert lsns == list(range(1, commits + 1))
    assert all(r == sorted(r) for r in results)
    assert stats["records"] == commits
    assert stats["fsyncs"] < commits

    replayed = dict(read_log(tmp_path))
    assert len(replayed) == commits
    for i, r in enumerate(results):
        assert [replayed[lsn] for lsn in r] == [f"{i}:{j}".encode() for j in range(per_thread)]


def test_appends_proceed_while_a_leader_is_in_fsync(tmp_path, monkeypatch):
    entered, release = threading.Event(), threading.Event()
    real_fsync = os.fsync

    def blocking_fsync(fd):
        entered.set()
        assert release.wait(10)
        real_fsync(fd)

    with WriteAheadLog.open(tmp_path, fsync=True) as wal:
        monkeypatch.setattr(os, "fsync", blocking_fsync)
        monkeypatch.setattr(os, "fdatasync", blocking_fsync)
        committer = threading.Thread(target=wal.commit, args=(b"first",))
        committer.start()
        assert entered.wait(10)
        assert wal.append(b"second") == 2  # does not wait for the fsync in progress
        assert wal.durable_lsn == 0
        release.set()
        committer.join()
        assert wal.durable_lsn >= 1
        wal.sync(2)
        assert wal.durable_lsn == 2
    assert read_log(tmp_path) == [(1, b"first"), (2, b"second")]


# -- commit codec ----------------------------------------------------------------------------

finite_f32 = st.floats(width=32, allow_nan=False)


@st.composite
def record_batches(draw) -> pa.RecordBatch:
    n = draw(st.integers(0, 6))
    dim = draw(st.integers(1, 4))
    ints = draw(st.lists(st.none() | st.integers(-(2**63), 2**63 - 1), min_size=n, max_size=n))
    floats = draw(st.lists(st.none() | st.floats(allow_nan=False), min_size=n, max_size=n))
    texts = draw(st.lists(st.none() | st.text(max_size=8), min_size=n, max_size=n))
    vectors = draw(
        st.lists(
            st.none() | st.lists(finite_f32, min_size=dim, max_size=dim), min_size=n, max_size=n
        )
    )
    return pa.record_batch(
        {
            "i": pa.array(ints, pa.int64()),
            "f": pa.array(floats, pa.float64()),
            "s": pa.array(texts, pa.string()),
            "v": pa.array(vectors, pa.list_(pa.float32(), dim)),
        }
    )


table_ids = st.integers(0, 2**64 - 1)
ops_strategy = st.lists(
    st.one_of(
        st.builds(InsertOp, table_ids, record_batches()),
        st.builds(
            DeleteOp,
            table_ids,
            st.lists(st.integers(-(2**63), 2**63 - 1), max_size=20).map(
                lambda xs: np.array(xs, dtype=np.int64)
            ),
        ),
        st.builds(TruncateOp, table_ids),
    ),
    max_size=6,
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops_strategy)
def test_commit_codec_roundtrip(ops):
    decoded = decode_commit(encode_commit(ops))
    assert decoded == ops
    for got, want in zip(decoded, ops):
        if isinstance(got, DeleteOp):
            assert got.rowids.dtype == np.int64
        if isinstance(got, InsertOp):
            assert got.batch.schema.equals(want.batch.schema)


def test_commit_codec_roundtrips_wide_types():
    tz = dt.timezone.utc
    batch = pa.record_batch(
        {
            "b": pa.array([True, None, False]),
            "i2": pa.array([1, None, -3], pa.int16()),
            "u": pa.array([1, 2, None], pa.uint32()),
            "num": pa.array(
                [decimal.Decimal("12345.67"), None, decimal.Decimal("-0.01")],
                pa.decimal128(10, 2),
            ),
            "ts": pa.array([dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=tz), None, None],
                           pa.timestamp("us", tz="Europe/Paris")),
            "ts_naive": pa.array([dt.datetime(2024, 1, 2), None, dt.datetime(1970, 1, 1)],
                                 pa.timestamp("ns")),
            "d": pa.array([dt.date(2024, 2, 29), None, dt.date(1, 1, 1)], pa.date32()),
            "bin": pa.array([b"\x00\xff", None, b""], pa.binary()),
            "big": pa.array(["x" * 100, None, ""], pa.large_string()),
            "vec": pa.array([[1.0, 2.0], None, [3.5, -4.0]], pa.list_(pa.float32(), 2)),
            "lst": pa.array([[1.0], [], None], pa.list_(pa.float32())),
            "dict": pa.array(["a", "b", None]).dictionary_encode(),
        },
        metadata={b"origin": b"test"},
    )
    (op,) = decode_commit(encode_commit([InsertOp(7, batch)]))
    assert op.table_id == 7
    assert op.batch.equals(batch, check_metadata=True)
    values = op.batch.column("vec").values
    assert values.buffers()[1].address % 4 == 0  # usable by numpy and Arrow kernels


def test_commit_codec_rejects_malformed_payloads():
    payload = encode_commit([TruncateOp(1), DeleteOp(2, np.array([1, 2, 3]))])
    for bad in (payload[:-1], bytes(payload) + b"\x00", payload[:3],
                b"\x01\x00\x00\x00\x09" + b"\0" * 16):
        with pytest.raises(DataCorrupted):
            decode_commit(bad)
    with pytest.raises(TypeError):
        encode_commit(["not an op"])  # type: ignore[list-item]


ROW_SCHEMA = pa.schema([pa.field("_rowid", pa.int64(), nullable=False),
                        pa.field("i8", pa.int64()), pa.field("i4", pa.int32()),
                        pa.field("i2", pa.int16()), pa.field("f", pa.float64()),
                        pa.field("b", pa.bool_()), pa.field("s", pa.string()),
                        pa.field("bin", pa.binary())])


@settings(max_examples=100, deadline=None)
@given(st.tuples(
    st.integers(0, 2**63 - 1), st.none() | st.integers(-2**63, 2**63 - 1),
    st.none() | st.integers(-2**31, 2**31 - 1), st.none() | st.integers(-2**15, 2**15 - 1),
    st.none() | st.floats(allow_nan=False), st.none() | st.booleans(),
    st.none() | st.text(), st.none() | st.binary()))
def test_one_row_inserts_read_back_as_their_batch(values):
    """A one-row insert logged from its Python values reads back as the one-row batch Arrow
    makes of them, in the same record as other ops."""
    ops = [DeleteOp(3, np.array([5])), RowInsertOp(3, values, ROW_SCHEMA, None)]
    deleted, inserted = decode_commit(encode_commit(ops))
    assert deleted == ops[0] and type(inserted) is InsertOp and inserted.table_id == 3
    assert inserted.batch.schema.equals(ROW_SCHEMA)
    assert inserted.batch.equals(pa.RecordBatch.from_pylist(
        [dict(zip(ROW_SCHEMA.names, values))], schema=ROW_SCHEMA))
    assert inserted.batch.equals(ops[1].batch)


def test_one_row_insert_records_reject_damage():
    payload = bytes(encode_commit([RowInsertOp(1, (1, 2, 3, 4, 0.5, True, "héllo", b"x"),
                                               ROW_SCHEMA, None)]))
    too_long = payload[:-5] + struct.pack("<I", 2) + b"x"  # the last value's length
    not_utf8 = payload.replace("héllo".encode(), b"h\xff\xffllo")
    for bad in (payload[:-1], payload + b"\x00", too_long, not_utf8):
        with pytest.raises(DataCorrupted):
            decode_commit(bad)


def test_commit_codec_round_trips_large_vector_batches():
    rows, dim = 10_000, 128
    vectors = np.random.default_rng(0).random((rows, dim), dtype=np.float32)
    batch = pa.record_batch(
        {
            "id": pa.array(np.arange(rows)),
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), dim),
        }
    )
    ops = [InsertOp(1, batch), DeleteOp(1, np.arange(1000))]
    decoded = decode_commit(encode_commit(ops))
    assert decoded == ops
    got = decoded[0].batch.column("embedding").values.to_numpy().reshape(rows, dim)
    assert np.array_equal(got, vectors)


# -- failed writes: a full disk, an I/O error ---------------------------------------------------


def test_full_disk_fails_the_commit_and_the_log_continues_after_its_last_good_record(
        tmp_path, monkeypatch):
    disk = FaultyDisk(monkeypatch)
    with WriteAheadLog.open(tmp_path, fsync=True) as wal:
        assert wal.commit(b"one") == 1
        disk.write_error = errno.ENOSPC
        with pytest.raises(DiskFull) as failed:
            wal.commit(b"lost" * 100)
        assert failed.value.sqlstate == "53100"
        assert "No space left on device" in failed.value.message
        with pytest.raises(DiskFull):  # refused until the tail is repaired
            wal.append(b"refused")
        disk.write_error = None
        wal.rollback()
        assert (wal.last_lsn, wal.durable_lsn) == (1, 1)
        assert wal.commit(b"two") == 2
    assert read_log(tmp_path) == [(1, b"one"), (2, b"two")]


def test_an_fsync_error_fails_pending_commits_and_stops_writes_until_restart(tmp_path, monkeypatch):
    disk = FaultyDisk(monkeypatch)
    with WriteAheadLog.open(tmp_path, fsync=True) as wal:
        wal.commit(b"one")
        disk.fsync_error = errno.EIO
        with pytest.raises(IoError) as failed:
            wal.commit(b"lost")
        assert failed.value.sqlstate == "58030" and "could not fsync" in failed.value.message
        disk.fsync_error = None
        wal.rollback()
        with pytest.raises(IoError) as refused:
            wal.append(b"refused")
        assert "Restart the server" in (refused.value.hint or "")
    assert read_log(tmp_path) == [(1, b"one")]


def test_every_waiter_of_a_failed_group_gets_the_error_and_later_commits_reuse_no_state(
        tmp_path, monkeypatch):
    """Eight committers share one group commit that fails: all eight fail, none is replayed,
    and the commits after the repair are the only ones found on reopen."""
    disk = FaultyDisk(monkeypatch)
    entered, release = threading.Event(), threading.Event()
    real_fsync = disk.fsync

    def slow_fsync(fd):
        entered.set()
        assert release.wait(10)
        real_fsync(fd)

    outcomes: dict[bytes, object] = {}
    with WriteAheadLog.open(tmp_path, fsync=True) as wal:
        wal.commit(b"base")
        monkeypatch.setattr(os, "fsync", slow_fsync)
        monkeypatch.setattr(os, "fdatasync", slow_fsync)
        leader = threading.Thread(target=lambda: outcomes.update(lead=_try(wal.commit, b"lead")))
        leader.start()
        assert entered.wait(10)
        # Appended while the leader is in fsync: they form the next group, which fails.
        lsns = [(wal.epoch, wal.append(f"w{i}".encode())) for i in range(8)]
        disk.write_error = errno.ENOSPC
        waiters = [threading.Thread(target=lambda e=e, n=n: outcomes.update(
            {n: _try(wal.sync, n, epoch=e)})) for e, n in lsns]
        for t in waiters:
            t.start()
        release.set()
        leader.join()
        for t in waiters:
            t.join()
        assert outcomes["lead"] == 2  # its own group was written before the disk filled
        assert all(isinstance(outcomes[n], DiskFull) for _e, n in lsns)
        disk.write_error = None
        monkeypatch.setattr(os, "fsync", disk.real_fsync)
        monkeypatch.setattr(os, "fdatasync", disk.real_fdatasync)
        wal.rollback()
        assert wal.commit(b"after") == 3
        # A waiter of the failed group asking again still gets its failure, not LSN 3's success.
        with pytest.raises(DiskFull):
            wal.sync(lsns[0][1], epoch=lsns[0][0])
    assert read_log(tmp_path) == [(1, b"base"), (2, b"lead"), (3, b"after")]


def _try(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - the outcome is what the test inspects
        return exc


def test_a_failed_rotation_removes_the_new_file(tmp_path, monkeypatch):
    disk = FaultyDisk(monkeypatch)
    with WriteAheadLog.open(tmp_path, fsync=True, segment_bytes=100) as wal:
        wal.commit(b"a" * 20)
        wal.commit(b"b" * 20)
        disk.write_error = errno.ENOSPC
        with pytest.raises(DiskFull):
            wal.commit(b"c" * 20)  # starts a new file, whose header cannot be written
        disk.write_error = None
        wal.rollback()
        assert [p.name for p in wal_files(tmp_path)] == [f"{1:020d}.wal"]
        assert wal.commit(b"d" * 20) == 3
    assert [lsn for lsn, _ in read_log(tmp_path)] == [1, 2, 3]
    assert [p.name for p in wal_files(tmp_path)] == [f"{1:020d}.wal", f"{3:020d}.wal"]


# -- damage that is not a torn write --------------------------------------------------------------


def test_a_damaged_record_followed_by_valid_ones_is_an_error_and_the_file_is_kept(tmp_path):
    with WriteAheadLog.open(tmp_path, fsync=True) as wal:
        for p in (b"first", b"second", b"third", b"fourth"):
            wal.commit(p)  # each durable before the next: the later ones vouch for it
    (path,) = wal_files(tmp_path)
    second = HEADER + FRAME + len(b"first")
    flip_byte(path, second + FRAME + 1)
    before = path.read_bytes()
    with pytest.raises(DataCorrupted) as damaged:
        WriteAheadLog.open(tmp_path)
    message = damaged.value.message
    assert str(path) in message and f"offset {second}" in message and "LSN 2" in message
    assert "2 valid record(s) follow it, up to LSN 4" in message
    assert "sqlvec wal truncate --lsn 1" in damaged.value.hint
    assert path.read_bytes() == before  # the evidence is untouched


def test_a_damaged_length_field_is_found_by_searching_for_later_records(tmp_path):
    with WriteAheadLog.open(tmp_path, fsync=True) as wal:
        for p in (b"x" * 30, b"y" * 30, b"z" * 30):
            wal.commit(p)
    (path,) = wal_files(tmp_path)
    second = HEADER + FRAME + 30
    flip_byte(path, second + 1)  # the length: the next frame's start is no longer known
    with pytest.raises(DataCorrupted, match="1 valid record"):
        WriteAheadLog.open(tmp_path)


def test_records_of_one_unsynced_group_after_a_torn_one_are_a_torn_write(tmp_path, caplog):
    """A crash may persist a group's pages out of order: the later records of the group do not
    vouch for the torn one (none was durable before them), so the tail is truncated."""
    with WriteAheadLog.open(tmp_path, fsync=True) as wal:
        wal.commit(b"durable")
        for p in (b"g1", b"g2", b"g3"):
            wal.append(p)
        wal.sync(wal.last_lsn)
    (path,) = wal_files(tmp_path)
    g1 = HEADER + FRAME + len(b"durable")
    flip_byte(path, g1 + FRAME)
    with caplog.at_level(logging.WARNING, logger="sqlvec.wal"):
        assert read_log(tmp_path) == [(1, b"durable")]
    assert "2 later record(s) of the same unsynced group" in caplog.text
    assert path.stat().st_size == g1


def test_truncate_log_keeps_a_prefix_and_saves_the_rest(tmp_path):
    with WriteAheadLog.open(tmp_path, fsync=False, segment_bytes=100) as wal:
        for i in range(1, 8):
            wal.commit(bytes([i]) * 20)
    saved = truncate_log(tmp_path, 4)
    assert saved and all(".cut-4" in p.name for p in saved)
    assert [lsn for lsn, _ in read_log(tmp_path)] == [1, 2, 3, 4]
    with WriteAheadLog.open(tmp_path, fsync=False) as wal:
        assert wal.commit(b"next") == 5
    with pytest.raises(DataCorrupted, match="not all readable"):
        (first_file := wal_files(tmp_path)[0]).write_bytes(first_file.read_bytes()[:-3])
        truncate_log(tmp_path, 4)


# -- space allocated ahead of the log ------------------------------------------------------------


def test_space_is_allocated_ahead_and_the_log_ends_at_its_last_record(tmp_path):
    with WriteAheadLog.open(tmp_path, fsync=True) as wal:
        for i in range(5):
            wal.commit(bytes([i + 1]) * 10)
    (path,) = wal_files(tmp_path)
    end = HEADER + 5 * (FRAME + 10)
    assert path.stat().st_size > end  # allocated ahead, reads as zeros
    assert path.read_bytes()[end:] == bytes(path.stat().st_size - end)
    with WriteAheadLog.open(tmp_path, fsync=True) as wal:
        assert wal.last_lsn == 5
        assert wal.commit(b"six") == 6  # written at the log's end, not the file's
    assert [lsn for lsn, _ in read_log(tmp_path)] == [1, 2, 3, 4, 5, 6]
    assert path.read_bytes()[end + FRAME: end + FRAME + 3] == b"six"


def _unwritten_extents(path: Path) -> list[int]:
    """Where the file's reserved but unwritten extents start (FIEMAP); skips the test where
    the file system cannot say."""
    import fcntl

    count = 64
    request = bytearray(struct.pack("=QQIIII", 0, 2**64 - 1, 1, 0, count, 0) + bytes(56 * count))
    with open(path, "rb") as f:
        try:
            fcntl.ioctl(f.fileno(), 0xC020660B, request)  # FS_IOC_FIEMAP, FIEMAP_FLAG_SYNC
        except OSError:
            pytest.skip("the file system does not map extents (FIEMAP)")
    mapped = struct.unpack_from("=I", request, 20)[0]
    extents = [struct.unpack_from("=QQQQQI", request, 32 + 56 * i) for i in range(mapped)]
    return [e[0] for e in extents if e[5] & 0x800]  # FIEMAP_EXTENT_UNWRITTEN


def test_the_space_ahead_is_written_so_a_commit_rewrites_blocks(tmp_path):
    # Reserved but unwritten space (fallocate on ext4 and XFS) would make the first commit
    # into each of its blocks wait for a journal commit in its fdatasync.
    with WriteAheadLog.open(tmp_path, fsync=True) as wal:
        for i in range(300):
            wal.commit(bytes([i % 250 + 1]) * 391)
        (path,) = wal_files(tmp_path)
        end = HEADER + 300 * (FRAME + 391)
        assert end < path.stat().st_size <= end + (256 << 10)  # zeros ahead, a step at a time
        assert _unwritten_extents(path) == []


def test_a_large_write_gets_no_zeros_ahead_but_the_small_one_after_it_does(tmp_path):
    with WriteAheadLog.open(tmp_path, fsync=True) as wal:
        wal.commit(b"p" * (256 << 10))  # a COPY's piece: zeros after it would be written twice
        (path,) = wal_files(tmp_path)
        end = HEADER + FRAME + (256 << 10)
        assert path.stat().st_size == end
        wal.commit(b"s" * 100)
        assert path.stat().st_size > end + FRAME + 100
    assert [len(p) for _, p in read_log(tmp_path)] == [256 << 10, 100]


def test_a_log_reopened_writes_zeros_over_space_reserved_past_its_end(tmp_path):
    with WriteAheadLog.open(tmp_path, fsync=True) as wal:
        wal.commit(b"a" * 100)
    (path,) = wal_files(tmp_path)
    with open(path, "r+b") as f:  # as an older version left it: reserved, unwritten
        os.posix_fallocate(f.fileno(), 0, 4 << 20)
    if not _unwritten_extents(path):
        pytest.skip("fallocate reserves written space here")
    with WriteAheadLog.open(tmp_path, fsync=True) as wal:
        wal.commit(b"b" * 391)
        end = HEADER + (FRAME + 100) + (FRAME + 391)
        # Zeros written a step (64 KiB) past the log's end, over what was reserved; ext4
        # itself zeroes at most 32 KiB around a block a write converts.
        assert min(_unwritten_extents(path)) >= end + (60 << 10)
        for _ in range(200):
            wal.commit(b"c" * 391)
    assert [lsn for lsn, _ in read_log(tmp_path)] == list(range(1, 203))


def test_a_rotated_file_gives_back_what_was_allocated_ahead(tmp_path):
    with WriteAheadLog.open(tmp_path, fsync=True, segment_bytes=4096) as wal:
        for _ in range(10):
            wal.commit(b"r" * 1000)
    files = wal_files(tmp_path)
    assert len(files) >= 3
    for path in files[:-1]:  # whole records, no allocated tail
        assert (path.stat().st_size - HEADER) % (FRAME + 1000) == 0


def test_a_zeroed_record_that_later_records_vouch_for_is_damage(tmp_path):
    with WriteAheadLog.open(tmp_path, fsync=True) as wal:
        for p in (b"a" * 50, b"b" * 50, b"c" * 50):
            wal.commit(p)
    (path,) = wal_files(tmp_path)
    data = bytearray(path.read_bytes())
    second = HEADER + FRAME + 50
    data[second: second + FRAME + 50] = bytes(FRAME + 50)  # a block that reads back as zeros
    path.write_bytes(bytes(data))
    with pytest.raises(DataCorrupted, match="zeroed record header followed by data"):
        WriteAheadLog.open(tmp_path)


def test_data_after_zeros_from_an_unsynced_group_is_a_torn_write(tmp_path, caplog):
    with WriteAheadLog.open(tmp_path, fsync=True) as wal:
        wal.commit(b"durable")
        for p in (b"g1" * 20, b"g2" * 20):
            wal.append(p)
        wal.sync(wal.last_lsn)
    (path,) = wal_files(tmp_path)
    data = bytearray(path.read_bytes())
    g1 = HEADER + FRAME + len(b"durable")
    data[g1: g1 + FRAME + 40] = bytes(FRAME + 40)  # the crash kept g2's block, not g1's
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="sqlvec.wal"):
        assert read_log(tmp_path) == [(1, b"durable")]
    assert "torn write" in caplog.text


def _small_batches() -> list[pa.RecordBatch]:
    tz = dt.timezone.utc
    big = pa.record_batch({"id": pa.array(np.arange(1000)), "s": [f"s{i}" for i in range(1000)]})
    return [
        pa.record_batch({"_rowid": pa.array([7], pa.int64()), "c1": pa.array([1], pa.int64()),
                         "c2": pa.array([None], pa.int32()), "c3": ["y"]}),
        pa.record_batch({"v": pa.FixedSizeListArray.from_arrays(
            pa.array(np.arange(6, dtype=np.float32)), 3), "b": [True, None]}),
        pa.record_batch({"n": pa.array([decimal.Decimal("1.25")], pa.decimal128(6, 2)),
                         "ts": pa.array([dt.datetime(2024, 1, 2, tzinfo=tz)],
                                        pa.timestamp("us", tz="UTC")),
                         "by": pa.array([b"\x00"], pa.binary()),
                         "l": pa.array([[1, None]], pa.list_(pa.int64()))},
                        metadata={b"k": b"v"}),
        big.slice(500, 1),  # a row of larger buffers: only its own bytes are written
        big.slice(10, 64),
        big.slice(0, 0),
    ]


@pytest.mark.parametrize("batch", _small_batches(), ids=lambda b: f"{b.num_rows}-rows")
def test_small_inserts_are_encoded_as_the_stream_writer_encodes_them(batch):
    """Insert batches of a few rows are encoded from the schema's message (serialized once) and
    the batch's: the bytes are those Arrow's stream writer produces, so the record format, and
    every record written before, are unchanged."""
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    body = sink.getvalue().to_pybytes()
    expected = struct.pack("<I", 2) + struct.pack("<BQQ", 1, 9, len(body)) + body + \
        struct.pack("<BQQ", 2, 9, 16) + np.array([3, 4], "<i8").tobytes()
    for _ in range(2):  # the schema's message comes from the cache the second time
        payload = encode_commit([InsertOp(9, batch), DeleteOp(9, np.array([3, 4]))])
        assert bytes(payload) == expected
    (op, _delete) = decode_commit(payload)
    assert op.batch.equals(batch, check_metadata=True)


# -- insert runs: a COPY's rows serialized and checksummed ahead ------------------------------


def run_batches(sizes: list[int], start: int = 0) -> list[pa.RecordBatch]:
    batches = []
    for n in sizes:
        ids = np.arange(start, start + n)
        batches.append(pa.record_batch({
            "id": pa.array(ids),
            "tag": pa.array([None if i % 5 == 0 else f"t{i}" for i in ids.tolist()], pa.string()),
            "v": pa.FixedSizeListArray.from_arrays(
                pa.array(np.arange(n * 3, dtype=np.float32) + start), 3)}))
        start += n
    return batches


@pytest.mark.parametrize("sizes", [(0, 1), (1, 0), (3, 1 << 20), (1 << 22, 77), (123, 0)])
def test_crc32_combine_is_the_crc_of_both_strings(sizes):
    a, b = (bytes(np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8)) for n in sizes)
    expected = zlib.crc32(a + b)
    assert crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == expected
    # the pure Python fallback, for systems whose zlib library is not found
    assert wal_module._multmodp(wal_module._x2nmodp(len(b), 3), zlib.crc32(a)) \
        ^ zlib.crc32(b) == expected


def test_an_insert_run_is_logged_as_its_serialized_batches_and_read_back_as_one_insert(
        tmp_path):
    batches = run_batches([40, 1, 25])
    op = InsertRunOp.start(7, [EncodedBatch.of(b) for b in batches])
    op = InsertRunOp(op.table_id, op.batches, first_rowid=1000, joined=op.joined)
    payload = encode_commit([op])
    assert isinstance(payload, EncodedPayload)
    # the batches' own serialized messages are written, not copies of them
    assert [b for b in payload.buffers if isinstance(b, pa.Buffer)] == \
        [p.message for p in op.batches]
    flat = b"".join(bytes(b) for b in payload.buffers)
    assert payload.size == len(flat) and payload.crc == zlib.crc32(flat)
    with WriteAheadLog.open(tmp_path, fsync=True) as wal:
        wal.append(b"before")
        wal.sync(wal.append(payload))
    with WriteAheadLog.open(tmp_path, fsync=False) as wal:  # every frame's CRC checked
        records = list(wal.replay())
    assert [lsn for lsn, _ in records] == [1, 2]
    (insert,) = decode_commit(records[1][1])
    assert isinstance(insert, InsertOp) and insert.table_id == 7
    expected = pa.concat_batches(batches)
    assert insert.batch.column(0).to_pylist() == list(range(1000, 1066))
    assert insert.batch.schema.field(0).name == "_rowid"
    assert pa.RecordBatch.from_arrays(insert.batch.columns[1:],
                                      schema=expected.schema).equals(expected)
    assert op.physical().equals(insert.batch)


def test_an_insert_run_beside_other_operations_is_encoded_whole():
    batches = run_batches([5, 6], start=10)
    run = InsertRunOp(3, tuple(EncodedBatch.of(b) for b in batches), first_rowid=50)
    payload = encode_commit([DeleteOp(3, np.array([1, 2])), run, TruncateOp(4)])
    ops = decode_commit(payload)
    assert ops[0] == DeleteOp(3, np.array([1, 2])) and ops[2] == TruncateOp(4)
    assert ops[1].batch.column(0).to_pylist() == list(range(50, 61))
    assert ops[1].batch.column("id").to_pylist() == list(range(10, 21))


def test_an_insert_run_needs_its_row_ids():
    run = InsertRunOp(3, tuple(EncodedBatch.of(b) for b in run_batches([2])))
    with pytest.raises(ValueError):
        encode_commit([run])
