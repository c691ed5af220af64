"""wire.logs: PostgreSQL's text lines and jsonlog objects, log_min_messages in PostgreSQL's
order of levels (LOG above ERROR), and a size-rotated file beside stderr."""

from __future__ import annotations

import csv
import io
import json
import logging
import time

import pytest

from wire import logs


def record(level: int, message: str, **extra) -> logging.LogRecord:
    item = logging.LogRecord("sqlvec.test", level, __file__, 1, message, (), None)
    item.__dict__.update(extra)
    return item


def test_text_lines_have_postgresql_labels_and_statement_lines():
    text = logs.TextFormatter().format(record(
        logging.ERROR, 'relation "x" does not exist', pg_severity="ERROR",
        statement="select * from x", hint="Check the name.", session_pid=1001))
    first, hint, statement = text.split("\n")
    assert first.endswith(' UTC [1001] ERROR:  relation "x" does not exist')
    assert hint.endswith("[1001] HINT:  Check the name.")
    assert statement.endswith("[1001] STATEMENT:  select * from x")
    assert logs.TextFormatter().format(record(logging.INFO, "ready")).endswith("] LOG:  ready")


def test_json_lines_use_jsonlog_keys():
    line = logs.JsonFormatter().format(record(
        logging.ERROR, "division by zero", pg_severity="ERROR", sqlstate="22012",
        statement="select 1/0", user="postgres", dbname="postgres", session_pid=7))
    entry = json.loads(line)
    assert "\n" not in line
    assert {k: entry[k] for k in ("error_severity", "state_code", "message", "statement", "user",
                                  "dbname", "pid", "backend_type")} == {
        "error_severity": "ERROR", "state_code": "22012", "message": "division by zero",
        "statement": "select 1/0", "user": "postgres", "dbname": "postgres", "pid": 7,
        "backend_type": "client backend"}
    assert entry["timestamp"].endswith(" UTC")


@pytest.mark.parametrize("threshold, kept", [
    ("warning", ["LOG", "WARNING", "ERROR", "FATAL"]),
    ("error", ["LOG", "ERROR", "FATAL"]),
    ("log", ["LOG", "FATAL"]),
    ("fatal", ["FATAL"]),
    ("debug1", ["DEBUG", "LOG", "WARNING", "ERROR", "FATAL"]),
])
def test_log_min_messages_uses_postgresql_order(threshold, kept):
    keep = logs._MinMessages(threshold)
    levels = [logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL]
    assert [logs.pg_severity(r) for r in map(lambda lv: record(lv, "m"), levels)
            if keep.filter(r)] == kept


@pytest.fixture
def restore_root():
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in before:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)


def test_a_file_rotates_by_size_and_takes_json(tmp_path, restore_root):
    path = tmp_path / "log" / "sqlvec.log"
    logs.configure(logs.LogSettings(destination="jsonlog", file=str(path), rotation_bytes=2000))
    log = logging.getLogger("sqlvec.test")
    for i in range(60):
        log.info("line %d of a log that grows past its rotation size", i)
    files = sorted(p.name for p in path.parent.iterdir())
    assert files[0] == "sqlvec.log" and "sqlvec.log.1" in files
    assert len(files) <= logs.BACKUP_COUNT + 1
    entries = [json.loads(line) for line in path.read_text().splitlines()]
    assert entries[-1]["message"] == "line 59 of a log that grows past its rotation size"


def test_settings_come_from_the_configuration(tmp_path):
    values = {"logging_collector": "on", "log_directory": "pg_log", "log_filename": "server.log",
              "log_destination": "stderr,jsonlog", "log_rotation_size": "1MB",
              "log_min_messages": "error"}
    settings = logs.LogSettings.from_settings(values.get, str(tmp_path))
    assert settings.file == str(tmp_path / "pg_log" / "server.log")
    assert (settings.json_file, settings.rotation_bytes, settings.min_messages) == (
        True, 1 << 20, "error")
    explicit = logs.LogSettings.from_settings(values.get, str(tmp_path), "/tmp/x.log", "debug1")
    assert (explicit.file, explicit.min_messages) == ("/tmp/x.log", "debug1")
    assert logs.LogSettings.from_settings({}.get, str(tmp_path)).file is None


def test_csvlog_writes_postgresql_rows_beside_the_log_file(tmp_path, restore_root):
    path = tmp_path / "log" / "server.log"
    logs.configure(logs.LogSettings(destination="stderr,csvlog", file=str(path)))
    logging.getLogger("sqlvec.test").error(
        "relation \"x\" does not exist", extra={"pg_severity": "ERROR", "sqlstate": "42P01",
                                               "statement": "select *\nfrom x", "user": "alice",
                                               "dbname": "postgres", "session_pid": 4242})
    rows = list(csv.reader(io.StringIO((tmp_path / "log" / "server.csv").read_text())))
    assert len(rows) == 1 and len(rows[0]) == 26  # PostgreSQL 16's csvlog columns
    row = rows[0]
    assert (row[1], row[2], row[3], row[11], row[12], row[13], row[19], row[23]) == (
        "alice", "postgres", "4242", "ERROR", "42P01", 'relation "x" does not exist',
        "select *\nfrom x", "client backend")
    assert row[0].endswith(" UTC")
    # the text log is still written beside it
    assert 'ERROR:  relation "x" does not exist' in path.read_text()


def test_csvlog_alone_writes_only_the_csv_file(tmp_path, restore_root):
    path = tmp_path / "log" / "server.log"
    logs.configure(logs.LogSettings(destination="csvlog", file=str(path)))
    logging.getLogger("sqlvec.test").warning("only in csv")
    assert not path.exists()
    assert "only in csv" in (tmp_path / "log" / "server.csv").read_text()


def test_a_file_rotates_by_age(tmp_path, restore_root):
    path = tmp_path / "log" / "sqlvec.log"
    logs.configure(logs.LogSettings(file=str(path), rotation_seconds=3600))
    log = logging.getLogger("sqlvec.test")
    log.warning("first")
    handler = next(h for h in logging.getLogger().handlers if isinstance(h, logs.RotatingLog))
    assert handler.rollover_at is not None and handler.rollover_at > time.time() + 3000
    log.warning("second")  # younger than an hour: same file
    assert not (tmp_path / "log" / "sqlvec.log.1").exists()
    handler.rollover_at = time.time() - 1  # the hour is up
    log.warning("third")
    assert "first" in (tmp_path / "log" / "sqlvec.log.1").read_text()
    assert "third" in path.read_text() and "first" not in path.read_text()
    assert handler.rollover_at > time.time() + 3000  # and the next hour starts


def test_rotation_age_and_csvlog_settings(tmp_path):
    values = {"log_rotation_age": "90min", "log_destination": "csvlog,jsonlog",
              "logging_collector": "on", "log_filename": "pg.log"}
    settings = logs.LogSettings.from_settings(values.get, str(tmp_path))
    assert settings.rotation_seconds == 5400
    assert settings.csv_file == str(tmp_path / "log" / "pg.csv")
    assert logs.LogSettings.from_settings({"log_rotation_age": "0"}.get, "x").rotation_seconds == 0
    assert logs.LogSettings.from_settings({"log_rotation_age": "2h"}.get, "x").rotation_seconds \
        == 7200
    assert logs.LogSettings.from_settings({"log_rotation_age": "30"}.get, "x").rotation_seconds \
        == 1800
    assert logs.LogSettings.from_settings({}.get, "x").rotation_seconds == 86400
