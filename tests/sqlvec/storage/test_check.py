"""`sqlvec check`'s engine side: every kind of file, damaged one at a time, is reported by name;
a healthy directory passes; the check changes nothing."""

from __future__ import annotations

import glob
import hashlib
import os

import numpy as np
import pyarrow.compute as pc
import pytest

from sqlvec.database import Database
from sqlvec.errors import SqlVecError
from sqlvec.maintenance import check_data_directory
from sqlvec.storage.store import StoreOptions

OPTS = StoreOptions(background=False, seal_rows=1000, wal_segment_bytes=2048,
                    checkpoint_wal_bytes=1 << 40)


def vectors(n: int, start: int = 0) -> np.ndarray:
    return np.random.default_rng(start).standard_normal((n, 4)).astype(np.float32)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> str:
    """Two sealed indexed segments with deletes, several WAL files, a second database."""
    path = str(tmp_path_factory.mktemp("check") / "data")
    with Database.open(path, options=OPTS) as db:
        t = db.create_table("t", {"id": "int8", "v": "vector(4)"})
        t.insert({"id": np.arange(200), "v": vectors(200)})
        t.create_index("v", m=4, ef_construction=8)  # seals the first segment
        t.insert({"id": np.arange(200, 300), "v": vectors(100, 200)})
        t.delete(lambda r: pc.less(r["id"], 10))
        db.store().checkpoint()
        u = db.create_table("u", {"id": "int8"})
        for i in range(0, 100, 10):
            u.insert({"id": np.arange(i, i + 10)})
        db.create_database("other")
        db.create_table("w", {"id": "int8"}, database="other").insert({"id": [1]})
    return path


def one(pattern: str, root: str) -> str:
    found = sorted(glob.glob(os.path.join(root, "postgres", pattern)))
    assert found, pattern
    return found[0]


def flip(path: str, offset: int | None = None) -> None:
    with open(path, "r+b") as f:
        data = bytearray(f.read())
        at = len(data) // 2 if offset is None else offset
        data[at] ^= 0x5A
        f.seek(0)
        f.write(data)


def digest(root: str) -> dict[str, str]:
    return {os.path.relpath(p, root): hashlib.sha256(open(p, "rb").read()).hexdigest()
            for p in glob.glob(os.path.join(root, "**"), recursive=True) if os.path.isfile(p)}


def test_healthy_directory_passes(pristine):
    report = check_data_directory(pristine)
    assert report.findings == []
    assert report.databases == 2 and not report.server_running
    assert report.checked["segment"] == 2 and report.checked["index file"] == 2
    assert report.checked["vectors file"] == 2  # table t's segments; u has no vector column
    assert report.checked["columns file"] == 2  # every segment's other columns
    assert report.checked["delete bitmap"] == 1 and report.checked["WAL file"] > 2
    assert report.summary().endswith(": no damage found")


@pytest.mark.parametrize("pattern,kind", [
    ("tables/*/*.parquet", 'segment file of table "t" is damaged (CRC mismatch)'),
    ("tables/*/*.vectors.arrow", 'segment vectors file of table "t" is damaged (CRC mismatch)'),
    ("tables/*/*.columns.arrow", 'segment columns file of table "t" is damaged (CRC mismatch)'),
    ("tables/*/*.hnsw", 'HNSW index file of index "t_v_idx" on table "t"'),
    ("tables/*/*.del", 'delete bitmap file of table "t" is damaged (CRC32 mismatch'),
    ("manifest/manifest-00000001.json", "manifest file is damaged"),
])
def test_each_damaged_file_is_named(copy, pattern, kind):
    path = one(pattern, copy)
    flip(path, os.path.getsize(path) - 2 if path.endswith(".del") else None)
    report = check_data_directory(copy)
    assert [(f.path, f.damaged) for f in report.findings] == [(os.path.relpath(path, copy), True)]
    assert kind.replace(" on table", " of table") in report.findings[0].message
    assert report.summary().endswith(": 1 damaged")


def test_missing_and_short_files(copy):
    segment = one("tables/*/*.parquet", copy)
    index = one("tables/*/*.hnsw", copy)
    os.truncate(segment, 100)
    os.remove(index)
    messages = {f.path: f.message for f in check_data_directory(copy).findings}
    assert "is damaged (wrong size). The file has 100 bytes" in \
        messages[os.path.relpath(segment, copy)]
    assert " is missing; the server rebuilds it" in messages[os.path.relpath(index, copy)]


def test_latest_manifest_damage_tells_how_to_fall_back(copy):
    latest = sorted(glob.glob(os.path.join(copy, "postgres", "manifest", "*.json")))[-1]
    flip(latest)
    report = check_data_directory(copy)
    damaged = [f for f in report.findings if f.damaged]
    assert [f.path for f in damaged] == [os.path.relpath(latest, copy)]
    assert "cannot be opened until it is repaired" in damaged[0].message
    assert "move " + os.path.basename(latest) + " out of the manifest directory" in \
        damaged[0].message
    # Table files were still checked, against the version before.
    notes = [f for f in report.findings if not f.damaged]
    assert len(notes) == 1 and "newest intact" in notes[0].message
    assert report.checked["segment"] == 2


def test_wal_frame_damage_mid_log_and_torn_tail(copy):
    files = sorted(glob.glob(os.path.join(copy, "postgres", "wal", "*.wal")))
    assert len(files) > 2
    flip(files[1], os.path.getsize(files[1]) - 3)  # inside a payload: CRC mismatch
    with open(files[-1], "ab") as f:
        f.write(b"\x10\x00\x00\x00partial")  # an interrupted append
    findings = check_data_directory(copy).findings
    by_path = {f.path: f for f in findings}
    mid = by_path[os.path.relpath(files[1], copy)]
    assert mid.damaged and "CRC mismatch at offset" in mid.message
    tail = by_path[os.path.relpath(files[-1], copy)]
    assert not tail.damaged and "the next start truncates it" in tail.message
    assert len(findings) == 2


def test_missing_wal_needed_by_a_table(copy):
    os.remove(sorted(glob.glob(os.path.join(copy, "postgres", "wal", "*.wal")))[0])
    findings = check_data_directory(copy).findings
    assert [f.path for f in findings] == [os.path.join("postgres", "wal")]
    assert "WAL files are missing" in findings[0].message


def test_check_changes_nothing(copy):
    for pattern in ("tables/*/*.parquet", "tables/*/*.del"):
        flip(one(pattern, copy))
    wal = sorted(glob.glob(os.path.join(copy, "postgres", "wal", "*.wal")))[-1]
    with open(wal, "ab") as f:
        f.write(b"\x01\x02")
    open(os.path.join(copy, "postgres", "manifest", ".manifest-x.json.abc.tmp"), "wb").close()
    before = digest(copy)
    assert len(check_data_directory(copy).damaged) == 2
    assert digest(copy) == before


def test_reports_a_running_server_and_checks_anyway(copy):
    flip(one("tables/*/*.parquet", copy))
    with Database.open(copy, options=OPTS) as db:
        assert db.table("u").count() == 100
        report = check_data_directory(copy)
    assert report.server_running
    assert len(report.damaged) == 1
    assert not check_data_directory(copy).server_running


def test_missing_directory(tmp_path):
    with pytest.raises(SqlVecError, match="does not exist") as info:
        check_data_directory(str(tmp_path / "nope"))
    assert info.value.sqlstate == "58P01"


def test_gap_in_the_wal(copy):
    files = sorted(glob.glob(os.path.join(copy, "postgres", "wal", "*.wal")))
    os.remove(files[1])
    findings = check_data_directory(copy).findings
    assert [f.path for f in findings] == [os.path.relpath(files[2], copy)]
    assert "but the previous file ends at LSN" in findings[0].message
