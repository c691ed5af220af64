from __future__ import annotations

import json
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sqlvec.errors import DataCorrupted, SqlVecError
from sqlvec.storage.manifest import (
    FEATURE_DELETE_BITMAPS,
    FEATURE_WAL_V1,
    FORMAT_VERSION,
    SUPPORTED_FEATURES,
    Manifest,
    ManifestStore,
)

BODY = {"tables": [{"name": "items", "segments": [1, 2]}], "wal_lsn": 42}


def _rewrite(path, mutate) -> None:
    """Edit a manifest file and re-seal its checksum, as a newer writer would have."""
    doc = json.loads(path.read_text())
    mutate(doc)
    doc.pop("checksum")
    canon = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    doc["checksum"] = zlib.crc32(canon.encode())
    path.write_text(json.dumps(doc))


def test_empty_directory_has_no_manifest(tmp_path) -> None:
    store = ManifestStore(tmp_path / "db")
    assert store.load_latest() is None
    assert store.versions() == []


def test_commit_load_round_trip(tmp_path) -> None:
    store = ManifestStore(tmp_path)
    m = store.commit(BODY, features=[FEATURE_WAL_V1, FEATURE_DELETE_BITMAPS])
    assert m == Manifest(1, BODY, tuple(sorted([FEATURE_WAL_V1, FEATURE_DELETE_BITMAPS])))
    assert (tmp_path / "manifest" / "manifest-00000001.json").is_file()
    assert ManifestStore(tmp_path).load_latest() == m
    assert store.load(1) == m

    doc = json.loads((tmp_path / "manifest" / "manifest-00000001.json").read_text())
    assert doc["format_version"] == FORMAT_VERSION and doc["version"] == 1
    assert doc["created"].endswith("+00:00")


def test_versions_increase(tmp_path) -> None:
    store = ManifestStore(tmp_path)
    for i in range(1, 5):
        assert store.commit({"n": i}).version == i
    assert store.versions() == [1, 2, 3, 4]
    latest = ManifestStore(tmp_path).load_latest()
    assert latest is not None and latest.version == 4 and latest.body == {"n": 4}
    assert store.load(2).body == {"n": 2}


def test_only_newest_keep_remain(tmp_path) -> None:
    store = ManifestStore(tmp_path, keep=3)
    for i in range(10):
        store.commit({"n": i})
    assert store.versions() == [8, 9, 10]
    assert sorted(p.name for p in (tmp_path / "manifest").iterdir()) == [
        "manifest-00000008.json",
        "manifest-00000009.json",
        "manifest-00000010.json",
    ]
    with pytest.raises(ValueError):
        ManifestStore(tmp_path, keep=0)


def test_commit_returns_what_load_sees(tmp_path) -> None:
    store = ManifestStore(tmp_path)
    m = store.commit({"t": (1, 2)})
    assert m.body == {"t": [1, 2]} == store.load_latest().body


def test_commit_rejects_unknown_feature_and_bad_body(tmp_path) -> None:
    store = ManifestStore(tmp_path)
    with pytest.raises(ValueError, match="time-travel"):
        store.commit({}, features=["time-travel"])
    with pytest.raises(TypeError):
        store.commit({"x": object()})
    with pytest.raises(TypeError):
        store.commit({"x": float("nan")})
    assert store.versions() == []


def _two_versions(tmp_path):
    store = ManifestStore(tmp_path)
    store.commit({"n": 1})
    store.commit({"n": 2, "segments": ["a", "b"]})
    return store, tmp_path / "manifest" / "manifest-00000002.json"


def _assert_reports_damage(store: ManifestStore) -> None:
    with pytest.raises(DataCorrupted) as exc:
        store.load_latest()
    msg = str(exc.value)
    assert "manifest-00000002.json" in msg
    assert "previous version manifest-00000001.json, which is still present" in msg
    assert "move manifest-00000002.json out of the manifest directory" in msg
    assert exc.value.sqlstate == "XX001"


def test_corrupt_latest_flipped_byte(tmp_path) -> None:
    store, path = _two_versions(tmp_path)
    good = path.read_bytes()
    for i in range(len(good)):
        damaged = bytearray(good)
        damaged[i] ^= 0x01
        path.write_bytes(bytes(damaged))
        _assert_reports_damage(store)
    path.write_bytes(good)
    assert store.load_latest().body["n"] == 2


def test_corrupt_latest_truncated(tmp_path) -> None:
    store, path = _two_versions(tmp_path)
    good = path.read_bytes()
    for n in (0, 1, len(good) // 2, len(good) - 3):
        path.write_bytes(good[:n])
        _assert_reports_damage(store)


@pytest.mark.parametrize(
    "text", ["not json", "[]", "{}", '{"format_version": 1}', "null", '{"a": NaN}']
)
def test_corrupt_latest_invalid_json(tmp_path, text: str) -> None:
    store, path = _two_versions(tmp_path)
    path.write_text(text)
    _assert_reports_damage(store)


def test_checksum_mismatch_without_previous_version(tmp_path) -> None:
    store = ManifestStore(tmp_path)
    store.commit({"n": 1})
    path = tmp_path / "manifest" / "manifest-00000001.json"
    path.write_text(path.read_text().replace('"n": 1', '"n": 2'))
    with pytest.raises(DataCorrupted, match="checksum mismatch.*no earlier manifest"):
        store.load_latest()


def test_version_must_match_file_name(tmp_path) -> None:
    store, path = _two_versions(tmp_path)
    _rewrite(path, lambda d: d.update(version=7))
    _assert_reports_damage(store)


def test_unknown_feature_refused(tmp_path) -> None:
    store, path = _two_versions(tmp_path)
    _rewrite(path, lambda d: d.update(features=[FEATURE_WAL_V1, "columnar-v9"]))
    with pytest.raises(SqlVecError, match="unsupported feature columnar-v9") as exc:
        store.load_latest()
    assert exc.value.sqlstate == "XX000"


def test_newer_format_version_refused(tmp_path) -> None:
    store, path = _two_versions(tmp_path)
    _rewrite(path, lambda d: d.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(SqlVecError, match="format_version 2") as exc:
        store.load_latest()
    assert exc.value.sqlstate == "XX000"


def test_temp_file_leftovers_ignored_and_cleaned(tmp_path) -> None:
    store = ManifestStore(tmp_path)
    store.commit({"n": 1})
    mdir = tmp_path / "manifest"
    leftover = mdir / ".manifest-00000002.json.k3j2l1.tmp"
    leftover.write_bytes(b'{"format_version": 1, "bo')
    assert store.versions() == [1]
    assert store.load_latest().body == {"n": 1}

    reopened = ManifestStore(tmp_path)
    assert not leftover.exists()
    assert reopened.commit({"n": 2}).version == 2
    assert sorted(p.name for p in mdir.iterdir()) == [
        "manifest-00000001.json",
        "manifest-00000002.json",
    ]


def test_supported_features_constants() -> None:
    assert {"wal-v1", "hnsw-per-segment", "delete-bitmaps"} <= SUPPORTED_FEATURES


json_leaf = st.one_of(st.integers(-(2**63), 2**63), st.text(max_size=20), st.booleans(), st.none())
json_value = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=30,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=st.dictionaries(st.text(max_size=10), json_value, max_size=6))
def test_round_trip_random_bodies(tmp_path, body: dict) -> None:
    store = ManifestStore(tmp_path, keep=2)
    m = store.commit(body, features=sorted(SUPPORTED_FEATURES))
    assert m.body == body
    loaded = ManifestStore(tmp_path).load_latest()
    assert loaded == m
    assert loaded.features == tuple(sorted(SUPPORTED_FEATURES))
