"""Tests of the settings loader (puli.config) and of the dispatcher's schema and defaults."""

import argparse
import copy
import pathlib
import re

import pytest

from puli import config
from puli.config import (Bool, Choice, ConfigError, Duration, Float, Int, List, LogLevel, Mapping,
                         Path, Setting, Size, Str, Url)
from puli.dispatcher import settings as dispatcher_settings

SCHEMA = {
    "port": Setting(Int(1, 65535), "TCP port."),
    "address": Setting(Str(), "Listen address."),
    "timeout": Setting(Duration(minimum=1), "A duration."),
    "ratio": Setting(Float(0, 1), "A fraction."),
    "debug": Setting(Bool(), "A flag."),
    "data_dir": Setting(Path(), "A directory."),
    "log_dir": Setting(Path(optional=True), "An optional directory."),
    "db_url": Setting(Url(("sqlite", "mysql"), optional=True), "A URL."),
    "log_level": Setting(LogLevel(), "A level."),
    "backend": Setting(Choice("file", "db"), "A choice."),
    "max_bytes": Setting(Size(), "A size."),
    "licenses": Setting(Mapping(Int(0)), "Counters."),
    "pools": Setting(Mapping(List(Str())), "Lists by name."),
}

DEFAULTS = """\
port: 8004
address: 0.0.0.0
timeout: 30s
ratio: 0.5
debug: false
data_dir: ./var
log_dir: ""
db_url: ""
log_level: INFO
backend: db
max_bytes: 1M
licenses: {}
pools: {}
"""


@pytest.fixture
def defaults(tmp_path):
    path = tmp_path / "defaults.yml"
    path.write_text(DEFAULTS)
    return path


def write(tmp_path, text, name="conf.yml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def load(defaults, **kwargs):
    kwargs.setdefault("environ", {})
    return config.load(SCHEMA, defaults, env_prefix="T_", **kwargs)


def errors_of(defaults, **kwargs):
    with pytest.raises(ConfigError) as info:
        load(defaults, **kwargs)
    assert str(info.value) == "\n".join(info.value.errors)
    return info.value.errors


# --- sources and precedence ---

def test_defaults_alone_give_every_setting(defaults):
    settings = load(defaults)
    assert settings.port == 8004
    assert settings.timeout == 30.0
    assert settings.max_bytes == 1024 * 1024
    assert settings.log_dir is None
    assert settings.licenses == {}
    assert set(settings.as_dict()) == set(SCHEMA)


def test_each_source_overrides_the_ones_before_it(defaults, tmp_path):
    conf = write(tmp_path, "port: 1001\naddress: 10.0.0.1\ntimeout: 1m\nratio: 0.25\n")
    environ = {"T_ADDRESS": "10.0.0.2", "T_TIMEOUT": "2m", "T_RATIO": "0.75"}
    settings = load(defaults, config_file=conf, environ=environ,
                    overrides=["timeout=3m", "ratio=1"], values={"ratio": 0})
    assert settings.port == 1001             # file over defaults
    assert settings.address == "10.0.0.2"    # environment over file
    assert settings.timeout == 180.0         # --set over environment
    assert settings.ratio == 0.0             # values over --set


def test_system_file_is_read_only_when_no_config_file_is_given(defaults, tmp_path):
    system = write(tmp_path, "port: 1002\n", "system.yml")
    conf = write(tmp_path, "address: 10.0.0.3\n")
    assert load(defaults, system_file=system).port == 1002
    settings = load(defaults, system_file=system, config_file=conf)
    assert (settings.port, settings.address) == (8004, "10.0.0.3")
    assert load(defaults, system_file=tmp_path / "absent.yml").port == 8004


def test_missing_config_file_is_an_error(defaults, tmp_path):
    missing = tmp_path / "nope.yml"
    assert errors_of(defaults, config_file=missing) == [
        f"{missing}: cannot read: No such file or directory"]


def test_environment_reads_os_environ_by_default(defaults, monkeypatch):
    monkeypatch.setenv("PULI_TEST_CONFIG_PORT", "9000")
    assert config.load(SCHEMA, defaults, env_prefix="PULI_TEST_CONFIG_").port == 9000


def test_set_values_are_read_as_yaml(defaults):
    settings = load(defaults, overrides=[
        "licenses={nuke: 3, mtoa: 110}", "pools={farm: [a:8000, b]}", "debug=yes", "port= 9000"])
    assert settings.licenses == {"nuke": 3, "mtoa": 110}
    assert settings.pools == {"farm": ("a:8000", "b")}
    assert settings.debug is True
    assert settings.port == 9000


def test_text_for_a_string_setting_is_taken_literally(defaults):
    settings = load(defaults, overrides=["address=8004", "log_level=debug"],
                    environ={"T_BACKEND": "file", "T_DB_URL": "mysql://u:p@h/db"})
    assert settings.address == "8004"
    assert settings.db_url == "mysql://u:p@h/db"
    assert settings.log_level == "DEBUG"
    assert settings.backend == "file"


def test_set_with_an_empty_value_clears_an_optional_setting(defaults, tmp_path):
    conf = write(tmp_path, "db_url: sqlite:///tmp/x.db\nlog_dir: /tmp/logs\n")
    settings = load(defaults, config_file=conf, overrides=["db_url=", "log_dir="])
    assert (settings.db_url, settings.log_dir) == ("", None)


def test_paths_are_made_absolute_against_the_working_directory(defaults, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", "/home/someone")
    settings = load(defaults, overrides=["log_dir=~/logs"])
    assert settings.data_dir == tmp_path / "var"
    assert settings.log_dir == pathlib.Path("/home/someone/logs")


def test_an_empty_config_file_changes_nothing(defaults, tmp_path):
    assert load(defaults, config_file=write(tmp_path, "# nothing\n")) == load(defaults)


# --- errors ---

def test_unknown_key_in_file_suggests_the_closest_setting(defaults, tmp_path):
    conf = write(tmp_path, "prot: 9000\nzzz: 1\n")
    assert errors_of(defaults, config_file=conf) == [
        f"{conf}: key 'prot': unknown setting (did you mean 'port'?)",
        f"{conf}: key 'zzz': unknown setting"]


def test_unknown_environment_variable_suggests_the_variable(defaults):
    assert errors_of(defaults, environ={"T_PROT": "1", "OTHER_PROT": "1"}) == [
        "T_PROT=1: unknown setting (did you mean T_PORT?)"]


def test_unknown_set_key_suggests_the_closest_setting(defaults):
    assert errors_of(defaults, overrides=["adress=x"]) == [
        "--set adress=x: unknown setting (did you mean 'address'?)"]


def test_set_without_equals_is_an_error(defaults):
    assert errors_of(defaults, overrides=["port"]) == ["--set port: expected KEY=VALUE"]


def test_bad_values_name_their_source_and_key(defaults, tmp_path):
    conf = write(tmp_path, "port: 70000\ndebug: maybe\n")
    errors = errors_of(defaults, config_file=conf, environ={"T_TIMEOUT": "soon"},
                       overrides=["port=abc"], values={"ratio": 2})
    assert errors == [
        f"{conf}: key 'port': 70000 is more than the maximum, 65535",
        f"{conf}: key 'debug': 'maybe' is not a boolean (true or false)",
        "T_TIMEOUT=soon: 'soon' is not a duration (seconds, or e.g. 30s, 5m, 2h, 7d)",
        "--set port=abc: 'abc' is not an integer",
        "ratio=2: 2 is more than the maximum, 1",
    ]


def test_bad_value_inside_a_structured_value_is_located(defaults, tmp_path):
    conf = write(tmp_path, "licenses: {nuke: -1}\npools: {farm: [a, 3]}\n")
    assert errors_of(defaults, config_file=conf, overrides=["licenses={nuke: x}"]) == [
        f"{conf}: key 'licenses.nuke': -1 is less than the minimum, 0",
        f"{conf}: key 'pools.farm[1]': 3 is not a string (quote it)",
        "--set licenses={nuke: x}: licenses.nuke: 'x' is not an integer",
    ]


@pytest.mark.parametrize("text, reason", [
    ("port: true", "True is not an integer"),
    ("port: 80.5", "80.5 is not an integer"),
    ("port: 0", "0 is less than the minimum, 1"),
    ("address: ''", "must not be empty"),
    ("address: 8004", "8004 is not a string (quote it)"),
    ("ratio: .nan", "nan is not a number"),
    ("timeout: 500ms", "0.5s is less than the minimum, 1s"),
    ("timeout: -5", "-5s is less than the minimum, 1s"),
    ("timeout: 1h30", "'1h30' is not a duration (seconds, or e.g. 30s, 5m, 2h, 7d)"),
    ("data_dir: ''", "must not be empty"),
    ("db_url: http://example.com", "'http://example.com' is not a sqlite or mysql URL"),
    ("log_level: TRACE", "'TRACE' is not one of: DEBUG, INFO, WARNING, ERROR"),
    ("backend: DB", "'DB' is not one of: file, db"),
    ("max_bytes: 1KB", "'1KB' is not a size (bytes, or e.g. 512K, 64MiB, 2G)"),
    ("licenses: [a]", "['a'] is not a mapping (e.g. {name: value})"),
    ("licenses: {1: 2}", "key 1 is not a non-empty string (quote it)"),
    ("pools: {farm: a}", "'a' is not a list (e.g. [a, b])"),
])
def test_bad_file_values_are_refused_with_a_reason(defaults, tmp_path, text, reason):
    conf = write(tmp_path, text + "\n")
    [error] = errors_of(defaults, config_file=conf)
    assert error.endswith(": " + reason)


def test_all_errors_are_reported_not_just_the_first(defaults, tmp_path):
    conf = write(tmp_path, "port: x\nprot: 1\n")
    assert len(errors_of(defaults, config_file=conf, overrides=["debug=2", "nope=1"])) == 4


def test_yaml_syntax_error_names_file_and_line(defaults, tmp_path):
    conf = write(tmp_path, "port: 1\naddress: [unclosed\n")
    [error] = errors_of(defaults, config_file=conf)
    assert re.fullmatch(rf"{re.escape(str(conf))}: line [23]: invalid YAML: .+", error), error


def test_a_key_written_twice_is_an_error(defaults, tmp_path):
    conf = write(tmp_path, "port: 1\nport: 2\n")
    assert errors_of(defaults, config_file=conf) == [
        f"{conf}: line 2: invalid YAML: key 'port' appears twice"]


def test_a_file_that_is_not_a_mapping_is_an_error(defaults, tmp_path):
    conf = write(tmp_path, "- port\n")
    assert errors_of(defaults, config_file=conf) == [
        f"{conf}: expected a mapping of settings, found list"]


def test_defaults_file_must_set_every_setting(tmp_path):
    defaults = write(tmp_path, "port: 8004\n", "defaults.yml")
    errors = errors_of(defaults)
    assert f"{defaults}: key 'address': missing (every setting needs a default)" in errors
    assert len(errors) == len(SCHEMA) - 1


def test_a_setting_check_can_refuse_a_value(defaults, tmp_path):
    def even(value):
        if value % 2:
            raise ValueError(f"{value} is odd")
    schema = {**SCHEMA, "port": Setting(Int(), "An even port.", check=even)}
    with pytest.raises(ConfigError, match=r"^--set port=3: 3 is odd$"):
        config.load(schema, defaults, overrides=["port=3"], environ={})


# --- kinds ---

@pytest.mark.parametrize("text, seconds", [
    (30, 30.0), (1.5, 1.5), ("45", 45.0), ("500ms", 0.5), ("30s", 30.0), ("5m", 300.0),
    ("2h", 7200.0), ("7d", 604800.0), ("1w", 604800.0), ("1h30m", 5400.0), ("1h 30m", 5400.0),
    ("1.5h", 5400.0),
])
def test_durations(text, seconds):
    assert Duration().convert(text) == seconds


@pytest.mark.parametrize("seconds, text", [
    (30, "30s"), (300, "5m"), (90, "90s"), (7200, "2h"), (604800, "1w"), (0.5, "0.5s"), (0, "0s"),
])
def test_format_duration(seconds, text):
    assert config.format_duration(seconds) == text


@pytest.mark.parametrize("text, size", [
    (100, 100), ("100", 100), ("512K", 512 * 1024), ("64MiB", 64 * 1024**2), ("2G", 2 * 1024**3),
])
def test_sizes(text, size):
    assert Size().convert(text) == size


@pytest.mark.parametrize("value, result", [
    (True, True), ("yes", True), ("on", True), ("1", True), (1, True),
    (False, False), ("No", False), ("off", False), (0, False),
])
def test_booleans(value, result):
    assert Bool().convert(value) is result


# --- the settings object ---

def test_settings_are_read_only(defaults):
    settings = load(defaults, overrides=["pools={farm: [a]}"])
    with pytest.raises(AttributeError, match="read-only"):
        settings.port = 1
    with pytest.raises(TypeError):
        settings.pools["other"] = ()
    with pytest.raises(AttributeError, match=r"no setting 'prot' \(did you mean 'port'\?\)"):
        settings.prot  # noqa: B018 -- the attribute access is what is refused
    assert copy.deepcopy(settings) is settings


def test_replace_returns_a_changed_copy(defaults):
    settings = load(defaults)
    changed = settings.replace(port=1)
    assert (changed.port, settings.port) == (1, 8004)
    assert changed.as_dict() == {**settings.as_dict(), "port": 1}
    with pytest.raises(AttributeError, match="no setting 'prot'"):
        settings.replace(prot=1)


# --- command line and --check-config ---

def test_from_args_reads_config_and_set(defaults, tmp_path):
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    conf = write(tmp_path, "port: 1003\n")
    args = parser.parse_args(["--config", str(conf), "--set", "address=a", "--set", "debug=true"])
    settings = config.from_args(SCHEMA, defaults, args, environ={})
    assert (settings.port, settings.address, settings.debug) == (1003, "a", True)
    assert parser.parse_args([]).overrides == []


def test_check_lists_the_errors_of_a_file(defaults, tmp_path, monkeypatch):
    monkeypatch.setenv("PULI_DISPATCHER_PORT", "bad")  # check() looks at the file alone
    good = write(tmp_path, "port: 1\n", "good.yml")
    bad = write(tmp_path, "prot: 1\nport: x\n", "bad.yml")
    assert config.check(SCHEMA, defaults, good) == []
    assert config.check(SCHEMA, defaults, bad) == [
        f"{bad}: key 'prot': unknown setting (did you mean 'port'?)",
        f"{bad}: key 'port': 'x' is not an integer"]


# --- the dispatcher's settings ---

def test_dispatcher_defaults_load_and_resolve(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = dispatcher_settings.load_settings()
    assert settings.port == 8004
    assert settings.data_dir == tmp_path / "var" / "dispatcher"
    assert settings.db_url == f"sqlite://{tmp_path}/var/dispatcher/puli.sqlite"
    assert settings.log_dir == tmp_path / "var" / "dispatcher" / "log"
    assert settings.max_request_bytes == 64 * 1024 * 1024
    assert (settings.rn_timeout, settings.archive_after) == (30.0, 7 * 86400.0)


def test_dispatcher_defaults_file_documents_every_setting():
    lines = dispatcher_settings.DEFAULTS_PATH.read_text().splitlines()
    keys = {}
    for number, line in enumerate(lines):
        if match := re.match(r"(\w+):", line):
            keys[match[1]] = lines[number - 1]
    assert set(keys) == set(dispatcher_settings.SCHEMA)
    assert all(before.startswith("#") for before in keys.values()), keys


def test_top_level_conf_is_the_packaged_defaults():
    conf = pathlib.Path(__file__).resolve().parent.parent / "conf" / "dispatcher.yml"
    assert conf.resolve() == dispatcher_settings.DEFAULTS_PATH


def test_dispatcher_settings_from_the_command_line(tmp_path, monkeypatch):
    # A system file of the test's own, not the host's /etc/puli/dispatcher.yml.
    system = write(tmp_path, "port: 9100\nlicenses: {nuke: 1}\n", "system.yml")
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    monkeypatch.setenv("PULI_DISPATCHER_LICENSES", "{nuke: 3}")
    args = parser.parse_args(["--set", "db_url=mysql://farm:pw@db.example:3307/puli",
                              "--set", "pools={lighting: [render01:8000, render02]}"])
    settings = dispatcher_settings.load_settings(args, system_file=system, data_dir=tmp_path)
    assert settings.port == 9100
    assert settings.licenses == {"nuke": 3}
    assert settings.pools == {"lighting": ("render01:8000", "render02")}
    assert settings.db_url == "mysql://farm:pw@db.example:3307/puli"
    assert settings.log_dir == tmp_path / "log"


@pytest.mark.parametrize("url, reason", [
    ("sqlite://host/x.db", "a sqlite URL names no host: write sqlite:///abs/path"),
    ("sqlite:x.db", "the sqlite path must be absolute: sqlite:///abs/path"),
    ("mysql:///puli", "the URL names no host"),
    ("mysql://h:port/puli", "the URL has a bad port"),
    ("mysql://h/", "the URL must name one database"),
    ("mysql://h/a/b", "the URL must name one database"),
    ("mysql://h/puli?charset=utf8mb4", "leave charset out"),
    ("postgres://h/puli", "is not a sqlite or mysql URL"),
])
def test_dispatcher_refuses_bad_database_urls(url, reason):
    with pytest.raises(ConfigError) as info:
        dispatcher_settings.load_settings(db_url=url)
    assert reason in str(info.value)


@pytest.mark.parametrize("url", ["sqlite:///abs/puli.sqlite", "sqlite:/:memory:",
                                 "mysql://root@127.0.0.1:3306/puli", "mysql://u:p%40ss@db/puli"])
def test_dispatcher_accepts_good_database_urls(url):
    assert dispatcher_settings.load_settings(db_url=url).db_url == url


@pytest.mark.parametrize("name", ["render01:70000", "render 01", "render01:", ":8000", "-render"])
def test_dispatcher_refuses_bad_render_node_names(name):
    with pytest.raises(ConfigError, match="is not a render node name"):
        dispatcher_settings.load_settings(pools={"farm": [name]})


@pytest.mark.parametrize("url", ["ftp://puli:Sw0rdf1sh@db/puli", "mysql://puli:Sw0rdf1sh@/puli",
                                 "mysql://puli:Sw0rdf1sh@db:99x/puli"])
def test_a_bad_database_url_never_prints_its_password(tmp_path, url):
    import subprocess
    import sys
    (tmp_path / "bad.yml").write_text(f"db_url: '{url}'\n")
    base = [sys.executable, "-m", "puli.dispatcher.main", "--config", str(tmp_path / "bad.yml")]
    runs = [
        [sys.executable, "-m", "puli.dispatcher.main", "--check-config", str(tmp_path / "bad.yml")],
        [*base, "--set", f"db_url={url}", "tokens", "list"],
        [*base, "--set", f"db_url={url}"],
    ]
    for args in runs:
        out = subprocess.run(args, capture_output=True, text=True, timeout=60,
                             env={"PATH": "/usr/bin:/bin", "PULI_DISPATCHER_DB_URL": url})
        assert out.returncode != 0 and "db_url" in out.stdout + out.stderr, out
        assert "Sw0rdf1sh" not in out.stdout + out.stderr, out


def test_a_secret_setting_is_not_echoed_in_an_error():
    with pytest.raises(ConfigError) as caught:
        worker_settings_module().load_settings(argparse.Namespace(
            config="/dev/null", overrides=["tokn=puli_0123456789abcdef", "token_file=[1]"]))
    text = str(caught.value)
    assert "did you mean 'token'" in text and "0123456789abcdef" not in text


def worker_settings_module():
    from puli.worker import settings
    return settings
