"""Offline verification of a database directory: every file against its checksum (`sqlvec check`).

It only reads: nothing is repaired, truncated or removed, so it is safe beside a running server
(a file that server replaces while the check runs may then be reported; a re-run tells).

Per database directory:
- every retained manifest version: its JSON, keys and checksum (manifest.py);
- against the newest intact manifest, every table's files: each sealed segment's size and CRC32
  (segment.py), each vector index file's CRC32 (whatever its access method), each delete
  bitmap's header and CRC32 (deletes.py);
- the write-ahead log: every file's header, each frame's CRC and LSN sequence (wal.py), and that
  the log still holds every record after the oldest table checkpoint.
Neither Parquet nor an index's library parses the files: a CRC32 over the bytes is both cheaper
and stricter.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlvec.errors import DamagedFile, SqlVecError
from sqlvec.storage.deletes import DeleteBitmap
from sqlvec.storage.fsutil import crc32_file
from sqlvec.storage.manifest import ManifestStore, fallback_hint, manifest_name
from sqlvec.storage.segment import MAPPED_FILES, verify_file
from sqlvec.storage.wal import verify_files

# Kinds of files, as counted in the summary.
MANIFEST = "manifest"
SEGMENT = "segment"
VECTORS = "vectors file"
COLUMNS = "columns file"
MAPPED_KINDS = {"vectors": VECTORS, "columns": COLUMNS}  # segment.MAPPED_FILES key -> kind
INDEX = "index file"
DELETES = "delete bitmap"
WAL = "WAL file"


@dataclass(frozen=True)
class Finding:
    """One problem: a file (relative to the data directory) and what is wrong with it."""

    path: str
    message: str
    damaged: bool = True  # False for a note: nothing is lost, the next start repairs it


@dataclass
class CheckReport:
    """Everything one check found, over one or more databases."""

    findings: list[Finding] = field(default_factory=list)
    checked: Counter[str] = field(default_factory=Counter)  # kind -> files checked
    databases: int = 0
    server_running: bool = False  # a server held the data directory while it was checked

    @property
    def damaged(self) -> list[Finding]:
        return [f for f in self.findings if f.damaged]

    def summary(self) -> str:
        """The one-line verdict `sqlvec check` ends with: what was checked, and how much is
        damaged."""
        total = sum(self.checked.values())
        kinds = ", ".join(f"{n} {_plural(kind, n)}" for kind, n in self.checked.items() if n)
        dbs = f"{self.databases} {_plural('database', self.databases)}"
        damaged = len(self.damaged)
        verdict = "no damage found" if not damaged else f"{damaged} damaged"
        return f"checked {dbs}, {total} files ({kinds or 'none'}): {verdict}"


def _plural(word: str, n: int) -> str:
    return word if n == 1 else word + "s"


def check_database(directory: str, root: str, report: CheckReport) -> None:
    """Check one database directory, adding to `report`; paths are shown relative to `root`."""
    report.databases += 1
    body = _check_manifests(directory, root, report)
    if body is not None:
        _check_tables(directory, root, body, report)
    _check_wal(directory, root, body, report)


def _rel(path: str | os.PathLike[str], root: str) -> str:
    return os.path.relpath(path, root)


def _check_manifests(directory: str, root: str, report: CheckReport) -> dict[str, Any] | None:
    """Verify every manifest version; return the body of the newest intact one."""
    store = ManifestStore(directory, read_only=True)
    versions = store.versions()
    if not versions:
        report.findings.append(Finding(_rel(store.path, root), "holds no manifest"))
        return None
    newest: tuple[int, dict[str, Any]] | None = None
    for version in versions:
        report.checked[MANIFEST] += 1
        path = _rel(store.file(version), root)
        try:
            manifest = store.load(version)
        except DamagedFile as exc:
            what = f"manifest file {exc.describe()}"
            if version == versions[-1]:
                what += "; the database cannot be opened until it is repaired: " + (
                    fallback_hint(manifest_name(version), manifest_name(versions[-2]))
                    if len(versions) > 1 else "restore it from a backup")
            report.findings.append(Finding(path, what))
            continue
        except SqlVecError as exc:  # a newer format or feature: readable by a newer build only
            report.findings.append(Finding(path, exc.message))
            continue
        newest = (version, manifest.body)
    if newest is None:
        return None
    if newest[0] != versions[-1]:
        report.findings.append(Finding(
            _rel(store.file(newest[0]), root),
            "table files were checked against this version, the newest intact one", False))
    return newest[1]


def _check_tables(directory: str, root: str, body: dict[str, Any], report: CheckReport) -> None:
    for tmeta in body.get("tables", []):
        tdef = tmeta["def"]
        name = tdef["name"] if tdef.get("schema", "public") == "public" else \
            f'{tdef["schema"]}.{tdef["name"]}'
        tdir = os.path.join(directory, "tables", str(tdef["id"]))
        of_table = f'of table "{name}"'
        methods = {ix["name"]: ix.get("method", "hnsw") for ix in tdef.get("indexes") or []}
        for smeta in tmeta["segments"]:
            path = os.path.join(tdir, smeta["file"])
            report.checked[SEGMENT] += 1
            try:
                verify_file(path, smeta)
            except DamagedFile as exc:
                report.findings.append(_finding(exc, root, of_table))
            for key, (_suffix, kind) in MAPPED_FILES.items():
                if smeta.get(key):
                    report.checked[MAPPED_KINDS[key]] += 1
                    try:
                        verify_file(os.path.join(tdir, smeta[key]["file"]), smeta[key], kind)
                    except DamagedFile as exc:
                        report.findings.append(_finding(exc, root, of_table))
            for ix_name, imeta in (smeta.get("indexes") or {}).items():
                report.checked[INDEX] += 1
                problem = _crc_problem(os.path.join(tdir, imeta["file"]), int(imeta["crc32"]))
                if problem is not None:
                    report.findings.append(Finding(
                        _rel(os.path.join(tdir, imeta["file"]), root),
                        f'{methods.get(ix_name, "hnsw").upper()} index file of index '
                        f'"{ix_name}" {of_table} {problem}; the server '
                        "rebuilds it from its segment when it opens the database"))
            dmeta = smeta.get("deletes")
            if dmeta:
                report.checked[DELETES] += 1
                try:
                    DeleteBitmap.read(os.path.join(tdir, dmeta["file"]), int(smeta["rows"]))
                except DamagedFile as exc:
                    report.findings.append(_finding(exc, root, of_table))


def _finding(exc: DamagedFile, root: str, of_table: str) -> Finding:
    message = f"{exc.kind} {of_table} {exc.describe()}"
    if exc.detail:
        message += f". {exc.detail}"
    return Finding(_rel(exc.path, root), message)


def _crc_problem(path: str, expected: int) -> str | None:
    try:
        crc = crc32_file(path)
    except FileNotFoundError:
        return "is missing"
    except OSError as exc:
        return f"is damaged (unreadable: {exc.strerror})"
    if crc != expected:
        return f"is damaged (CRC mismatch: CRC32 {crc:#010x}, the manifest records {expected:#010x})"
    return None


def _check_wal(directory: str, root: str, body: dict[str, Any] | None, report: CheckReport) -> None:
    wal_dir = os.path.join(directory, "wal")
    checks = verify_files(wal_dir)
    for check in checks:
        report.checked[WAL] += 1
        if check.problem is None:
            continue
        if check.torn_tail:
            report.findings.append(Finding(
                _rel(check.path, root),
                f"WAL file ends in an incomplete record ({check.problem}), as a crash mid-write "
                "leaves it: the next start truncates it", damaged=False))
        else:
            report.findings.append(Finding(_rel(check.path, root), f"WAL file: {check.problem}"))
    tables = (body or {}).get("tables", [])
    if not tables:
        return
    if not checks:
        report.findings.append(Finding(_rel(wal_dir, root), "holds no WAL file"))
        return
    oldest = min(tables, key=lambda t: int(t["checkpoint_lsn"]))
    newest = max(tables, key=lambda t: int(t["checkpoint_lsn"]))
    first, last = checks[0].first_lsn, checks[-1].last_lsn
    if first > int(oldest["checkpoint_lsn"]) + 1:
        report.findings.append(Finding(
            _rel(wal_dir, root),
            f"the log starts at LSN {first}, but table \"{oldest['def']['name']}\" needs every "
            f"record after its checkpoint at LSN {oldest['checkpoint_lsn']}: WAL files are missing"))
    if last < int(newest["checkpoint_lsn"]) and all(c.problem is None for c in checks):
        report.findings.append(Finding(
            _rel(wal_dir, root),
            f"the log ends at LSN {last}, before table \"{newest['def']['name']}\"'s checkpoint at "
            f"LSN {newest['checkpoint_lsn']}: the end of the log is missing"))
