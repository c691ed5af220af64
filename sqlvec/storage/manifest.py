"""The manifest: the versioned, checksummed record of what a database directory contains.

Every change to the set of durable files (a segment sealed, an index built, a delete bitmap
rewritten, compaction swapping segments, the WAL position advanced) becomes visible by committing
a new manifest version; files the newest manifest does not list are not part of the database.
This module only persists and verifies manifests: the body is a JSON-able dict the caller builds.

Layout: `<database dir>/manifest/manifest-00000001.json`, `manifest-00000002.json`, ... The
highest version is current; the newest `keep` versions are retained for inspection and repair.

File format, version 1: one UTF-8 JSON object with exactly these keys

    format_version  int   layout of this object (FORMAT_VERSION = 1). A reader refuses a larger
                          value: it cannot know what a newer writer changed.
    features        list  sorted feature names the data relies on (see FEATURE_*). A reader
                          refuses any name it does not know, so an old build never misreads
                          data written with a newer capability.
    version         int   manifest version >= 1; equals the number in the file name.
    created         str   ISO 8601 UTC time of the commit; informational only.
    body            dict  the caller's content.
    checksum        int   zlib.crc32 of the canonical JSON of every other key: json.dumps with
                          sort_keys=True, separators=(",", ":"), ensure_ascii=True, encoded UTF-8.

A damaged newest manifest is an error, never a silent fallback to the previous version: that
version may not list segments sealed since (whose WAL has already been truncated).
Single writer per directory: one ManifestStore commits at a time.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlvec.errors import DamagedFile, SqlVecError
from sqlvec.storage.fsutil import StrPath, atomic_write, fsync_dir, remove_temp_files

FORMAT_VERSION = 1

FEATURE_WAL_V1 = "wal-v1"
FEATURE_WAL_V2 = "wal-v2"  # frames carry the durable LSN (wal.py); v1 files are still read
# Per-segment vector index files listed in the manifest; named when HNSW was the only method.
FEATURE_INDEXES_PER_SEGMENT = "hnsw-per-segment"
FEATURE_DELETE_BITMAPS = "delete-bitmaps"
SUPPORTED_FEATURES: frozenset[str] = frozenset(
    {FEATURE_WAL_V1, FEATURE_WAL_V2, FEATURE_INDEXES_PER_SEGMENT, FEATURE_DELETE_BITMAPS}
)

MANIFEST_DIR = "manifest"
_NAME = re.compile(r"^manifest-(\d{8,})\.json$")
_KEYS = frozenset({"format_version", "features", "version", "created", "body", "checksum"})


MANIFEST_FILE = "manifest file"


def fallback_hint(damaged: str, previous: str) -> str:
    """What to do about a damaged newest manifest: the database's whole state, so no table
    can be set aside the way a damaged segment is."""
    return (
        f"restore {damaged} from a backup; or use the previous version {previous}, which is "
        f"still present: copy the data directory first, then move {damaged} out of the manifest "
        "directory and restart (changes committed after that version may be lost)"
    )


def manifest_name(version: int) -> str:
    """The file name of a manifest version; zero-padded so names sort by version."""
    return f"manifest-{version:08d}.json"


def _canonical(doc: dict[str, Any]) -> bytes:
    return json.dumps(
        doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("utf-8")


@dataclass(frozen=True)
class Manifest:
    """One committed manifest version. Treat `body` as read-only: snapshots share it."""

    version: int
    body: dict[str, Any]
    features: tuple[str, ...] = ()
    created: str = field(default="", compare=False)


class ManifestStore:
    """Reads and commits the manifests of the database directory `directory`."""

    def __init__(self, directory: StrPath, *, keep: int = 10, read_only: bool = False) -> None:
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.directory = Path(directory)
        self.path = self.directory / MANIFEST_DIR
        self.keep = keep
        self._lock = threading.Lock()
        # Opening is the moment no commit can be in flight: drop what a crash left half-written
        # (unless only reading, as `sqlvec check` does: it changes nothing).
        if not read_only:
            remove_temp_files(self.path)

    def versions(self) -> list[int]:
        """Committed versions present on disk, ascending; temp files and strangers are ignored."""
        try:
            names = os.listdir(self.path)
        except FileNotFoundError:
            return []
        return sorted(int(m.group(1)) for n in names if (m := _NAME.match(n)))

    def file(self, version: int) -> Path:
        """The path of a manifest version's file."""
        return self.path / manifest_name(version)

    def load_latest(self) -> Manifest | None:
        """The current manifest, or None for a database that has never committed one."""
        versions = self.versions()
        if not versions:
            return None
        latest = versions[-1]
        previous = versions[-2] if len(versions) > 1 else None
        return self._read(latest, previous=previous, is_latest=True)

    def load(self, version: int) -> Manifest:
        """Read and verify a given manifest version (checksum, format and features), for the
        check and garbage collection, which look at versions other than the latest."""
        return self._read(version, previous=None, is_latest=False)

    def commit(self, body: dict[str, Any], *, features: Iterable[str] = (),
               pinned: Iterable[int] = ()) -> Manifest:
        """Durably write `body` as the next version; returns it exactly as a later load will.
        Versions in `pinned` (a backup is copying them) are kept past the newest `keep`."""
        feats = tuple(sorted(set(features)))
        unknown = [f for f in feats if f not in SUPPORTED_FEATURES]
        if unknown:
            raise ValueError(f"cannot write unknown manifest features {unknown}")
        if not isinstance(body, dict):
            raise TypeError(f"manifest body must be a dict, got {type(body).__name__}")
        with self._lock:
            versions = self.versions()
            version = (versions[-1] if versions else 0) + 1
            doc: dict[str, Any] = {
                "format_version": FORMAT_VERSION,
                "features": list(feats),
                "version": version,
                "created": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                "body": body,
            }
            try:
                doc["checksum"] = zlib.crc32(_canonical(doc))
            except (TypeError, ValueError) as e:
                raise TypeError(f"manifest body is not JSON-serializable: {e}") from e
            data = json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=True).encode("utf-8")
            if not self.path.is_dir():
                self.path.mkdir(parents=True, exist_ok=True)
                fsync_dir(self.directory)
            atomic_write(self.file(version), data + b"\n")
            self._prune([*versions, version], frozenset(pinned))
        # Hand back the parsed form (tuples become lists, keys strings) so nobody relies on
        # anything the file does not actually hold.
        return Manifest(version, json.loads(data)["body"], feats, doc["created"])

    def _prune(self, versions: list[int], pinned: frozenset[int] = frozenset()) -> None:
        """Delete versions older than the newest `keep`; they only serve manual repair (and
        backups, which pin the version they copy)."""
        stale = [v for v in versions[: -self.keep] if v not in pinned]
        for v in stale:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.file(v))
        if stale:
            fsync_dir(self.path)

    def _read(self, version: int, *, previous: int | None, is_latest: bool) -> Manifest:
        path = self.file(version)

        def corrupt(why: str) -> DamagedFile:
            msg = f'manifest file "{path}" is corrupt: {why}'
            hint = None
            if is_latest and previous is not None:
                hint = fallback_hint(path.name, manifest_name(previous))
                msg = f"{msg}; {hint}"
            elif is_latest:
                msg = f"{msg}; no earlier manifest version is present"
                hint = "Restore the file from a backup."
            return DamagedFile(MANIFEST_FILE, path, why, message=msg, hint=hint)

        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise DamagedFile(MANIFEST_FILE, path, "missing") from None
        except OSError as e:
            raise corrupt(f"unreadable ({e.strerror})") from None
        try:
            doc = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise corrupt(f"invalid JSON ({e})") from None
        if not isinstance(doc, dict) or set(doc) != _KEYS:
            keys = sorted(doc) if isinstance(doc, dict) else type(doc).__name__
            raise corrupt(f"expected keys {sorted(_KEYS)}, found {keys}")

        # Checked before the checksum: a newer format may checksum differently.
        fmt = doc["format_version"]
        if type(fmt) is not int or fmt < 1:
            raise corrupt(f"invalid format_version {fmt!r}")
        if fmt > FORMAT_VERSION:
            raise SqlVecError(
                f'manifest file "{path}" has format_version {fmt}, but this build of sqlvec '
                f"reads only up to {FORMAT_VERSION}",
                sqlstate="XX000",
                hint="upgrade sqlvec to open this database",
            )

        stored = doc.pop("checksum")
        try:
            actual = zlib.crc32(_canonical(doc))
        except ValueError as e:  # NaN / Infinity smuggled into the JSON
            raise corrupt(f"non-canonical JSON ({e})") from None
        if type(stored) is not int or stored != actual:
            raise corrupt(f"checksum mismatch (stored {stored!r}, computed {actual})")

        features = doc["features"]
        if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
            raise corrupt(f"invalid features {features!r}")
        unknown = sorted(set(features) - SUPPORTED_FEATURES)
        if unknown:
            raise SqlVecError(
                f'manifest file "{path}" uses unsupported feature'
                f"{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                f"this build of sqlvec supports {', '.join(sorted(SUPPORTED_FEATURES))}",
                sqlstate="XX000",
                hint="upgrade sqlvec to open this database",
            )
        if type(doc["version"]) is not int or doc["version"] != version:
            raise corrupt(f"records version {doc['version']!r}, file name says {version}")
        if not isinstance(doc["body"], dict):
            raise corrupt(f"body is a {type(doc['body']).__name__}, expected an object")
        if not isinstance(doc["created"], str):
            raise corrupt(f"invalid created {doc['created']!r}")
        return Manifest(version, doc["body"], tuple(features), doc["created"])
