"""The server's configuration files: every value validated by the setting registry at load
(the error names the file and line), the ALTER SYSTEM file read after the main one, a reload
that applies everything or nothing, and settings fixed at start reported as pending restart."""

from __future__ import annotations

import pytest

from sqlvec.catalog.config_file import ConfigFileError
from sqlvec.catalog.server_config import ServerConfig


def conf(tmp_path, text: str, name: str = "sqlvec.conf") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_values_are_validated_and_stored_as_shown(tmp_path):
    path = conf(tmp_path, "work_mem = 65536\nstatement_timeout = '1.5s'\nsqlvec.exact = yes\n"
                          "my.placeholder = anything\nLOG_MIN_MESSAGES = INFO\n")
    config = ServerConfig.load(str(tmp_path))
    assert config.session_values() == {
        "work_mem": "64MB", "statement_timeout": "1500ms", "sqlvec.exact": "on",
        "my.placeholder": "anything", "log_min_messages": "info"}
    assert (config.source_of("work_mem").file, config.source_of("work_mem").line) == (path, 1)


@pytest.mark.parametrize("line, message", [
    ("work_mem = 'lots'", 'invalid value for parameter "work_mem": "lots"'),
    ("statement_timeout = 5parsecs", 'invalid value for parameter "statement_timeout"'),
    ("sqlvec.target_recall = 1.5", 'outside the valid range for parameter "sqlvec.target_recall"'),
    ("sqlvec.exact = maybe", 'parameter "sqlvec.exact" requires a Boolean value'),
    ("hnsw.ef_serch = 100", 'unrecognized configuration parameter "hnsw.ef_serch"'),
    ("no_such_setting = 1", 'unrecognized configuration parameter "no_such_setting"'),
    ("server_version = '9.6'", 'parameter "server_version" cannot be changed'),
    ("log_destination = 'syslog'", 'invalid value for parameter "log_destination"'),
])
def test_a_bad_line_fails_the_load_naming_file_and_line(tmp_path, line, message):
    path = conf(tmp_path, f"# settings\nport = 5433\n{line}\n")
    with pytest.raises(ConfigFileError) as caught:
        ServerConfig.load(str(tmp_path))
    assert message in caught.value.message
    assert caught.value.message.endswith(f'in file "{path}" line 3')


def test_an_explicit_file_must_exist_and_replaces_the_data_directory_one(tmp_path):
    conf(tmp_path, "work_mem = 1MB\n")
    other = conf(tmp_path, "work_mem = 2MB\n", name="other.conf")
    assert ServerConfig.load(str(tmp_path), other).get("work_mem") == "2MB"
    with pytest.raises(ConfigFileError, match="could not open configuration file"):
        ServerConfig.load(str(tmp_path), str(tmp_path / "absent.conf"))
    assert ServerConfig.load(str(tmp_path / "empty")).session_values() == {}


def test_alter_system_writes_the_auto_file_read_after_the_main_one(tmp_path):
    conf(tmp_path, "work_mem = 1MB\nstatement_timeout = 1s\n")
    config = ServerConfig.load(str(tmp_path))
    config.alter_system("WORK_MEM", "8MB")
    config.alter_system("my.thing", "x")
    assert config.get("work_mem") == "1MB"  # until a reload
    assert config.reload()
    assert config.get("work_mem") == "8MB" and config.get("my.thing") == "x"
    assert config.source_of("work_mem").file == str(tmp_path / "sqlvec.auto.conf")
    config.alter_system("work_mem", None)  # RESET work_mem
    config.reload()
    assert config.get("work_mem") == "1MB" and config.get("my.thing") == "x"
    config.alter_system(None, None)  # RESET ALL
    config.reload()
    assert config.get("my.thing") is None and config.get("statement_timeout") == "1s"


def test_a_bad_reload_changes_nothing(tmp_path):
    path = conf(tmp_path, "work_mem = 1MB\n")
    config = ServerConfig.load(str(tmp_path))
    with open(path, "w") as f:
        f.write("work_mem = 2MB\nstatement_timeout = soon\n")
    generation = config.generation
    assert not config.reload()
    assert config.get("work_mem") == "1MB" and config.generation == generation


def test_settings_fixed_at_start_keep_their_value_and_report_pending_restart(tmp_path):
    path = conf(tmp_path, "max_connections = 50\nwork_mem = 1MB\n")
    config = ServerConfig.load(str(tmp_path))
    with open(path, "w") as f:
        f.write("max_connections = 20\nwork_mem = 2MB\nlisten_addresses = '*'\n")
    assert config.reload()
    assert config.get("max_connections") == "50" and config.get("work_mem") == "2MB"
    assert config.get("listen_addresses") is None
    assert config.pending_restart == {"max_connections", "listen_addresses"}
    with open(path, "w") as f:
        f.write("max_connections = 50\n")
    config.reload()
    assert config.pending_restart == set() and config.get("work_mem") is None
