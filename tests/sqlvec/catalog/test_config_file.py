"""Configuration files in PostgreSQL's syntax: `name = value` with or without `=`, quotes and
their escapes, comments, units left for the registry, includes relative to the including file,
and errors that name the file and the line."""

from __future__ import annotations

import os

import pytest

from sqlvec.catalog.config_file import (
    AUTO_CONF_HEADER,
    ConfigFileError,
    read_config,
    write_auto_conf,
)


def write(path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_lines_values_and_comments(tmp_path):
    path = write(tmp_path / "sqlvec.conf", "\n".join([
        "# a comment",
        "",
        "work_mem = '64MB'          # trailing comment",
        "statement_timeout 5s",
        "  search_path='\"$user\", public'",
        "my.text = 'it''s a \\'quote\\''",
        "log_destination=jsonlog",
        "sqlvec.target_recall = 0.9",
        "hnsw.ef_search = 0x40",
        "work_mem = 128MB",
    ]))
    entries = read_config(path)
    assert [(e.name, e.value, e.line) for e in entries] == [
        ("work_mem", "64MB", 3), ("statement_timeout", "5s", 4),
        ("search_path", '"$user", public', 5), ("my.text", "it's a 'quote'", 6),
        ("log_destination", "jsonlog", 7), ("sqlvec.target_recall", "0.9", 8),
        ("hnsw.ef_search", "0x40", 9), ("work_mem", "128MB", 10)]
    assert {e.file for e in entries} == {os.path.abspath(path)}


@pytest.mark.parametrize("line, near", [
    ("work_mem = = 3", 'near token "="'),
    ("work_mem 'unterminated", "near token \"'unterminated\""),
    ("work_mem =", "near end of line"),
    ("= 3", 'near token "="'),
    ("work_mem = 1 2", 'near token "2"'),
])
def test_syntax_errors_name_file_line_and_token(tmp_path, line, near):
    path = write(tmp_path / "bad.conf", f"# ok\nport = 5433\n{line}\n")
    with pytest.raises(ConfigFileError) as caught:
        read_config(path)
    assert caught.value.message == f'syntax error in file "{path}" line 3, {near}'
    assert caught.value.sqlstate == "F0000"


def test_includes_are_relative_to_the_including_file(tmp_path):
    (tmp_path / "conf.d").mkdir()
    write(tmp_path / "conf.d" / "b.conf", "work_mem = 2MB\n")
    write(tmp_path / "conf.d" / "a.conf", "work_mem = 1MB\n")
    write(tmp_path / "conf.d" / "ignored.txt", "work_mem = 9MB\n")
    write(tmp_path / "extra.conf", "statement_timeout = 1s\n")
    path = write(tmp_path / "main.conf", "include 'extra.conf'\ninclude_dir 'conf.d'\n"
                 "include_if_exists 'absent.conf'\nport = 1\n")
    assert [(e.name, e.value, os.path.basename(e.file)) for e in read_config(path)] == [
        ("statement_timeout", "1s", "extra.conf"), ("work_mem", "1MB", "a.conf"),
        ("work_mem", "2MB", "b.conf"), ("port", "1", "main.conf")]


def test_a_missing_include_names_the_including_line(tmp_path):
    path = write(tmp_path / "main.conf", "\ninclude 'absent.conf'\n")
    with pytest.raises(ConfigFileError, match=r'absent.conf": No such file or directory '
                                              rf'\(in file "{path}" line 2\)'):
        read_config(path)


def test_a_missing_file_is_empty_only_when_allowed(tmp_path):
    assert read_config(str(tmp_path / "none.conf"), missing_ok=True) == []
    with pytest.raises(ConfigFileError, match="could not open configuration file"):
        read_config(str(tmp_path / "none.conf"))


def test_the_auto_file_round_trips_through_the_reader(tmp_path):
    path = str(tmp_path / "sqlvec.auto.conf")
    write_auto_conf(path, {"work_mem": "64MB", "my.text": "it's \\ odd", "search_path": "a, b"})
    text = open(path).read()
    assert text.startswith(AUTO_CONF_HEADER)
    assert "work_mem = '64MB'\n" in text
    assert [(e.name, e.value) for e in read_config(path)] == [
        ("work_mem", "64MB"), ("my.text", "it's \\ odd"), ("search_path", "a, b")]
    assert os.listdir(tmp_path) == ["sqlvec.auto.conf"]  # no temporary file left behind
