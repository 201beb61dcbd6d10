"""The worker's settings: defaults, the layers over them, and refusals naming file, key and reason."""
import argparse
import os
import socket
import subprocess
import sys

import pytest

from puli import config
from puli.worker import settings as worker_settings
from puli.worker.settings import load_settings


def run_worker(*args, cwd=None):
    """`puli-worker args`, never with the host's /etc/puli/worker.yml: a render node installed
    here (the appliance checks install one) would otherwise get this worker's log and files."""
    if "--check-config" not in args:
        args = ("--config", os.devnull, *args)
    return subprocess.run([sys.executable, "-m", "puli.worker.main", *args], capture_output=True,
                          text=True, timeout=60, cwd=cwd)


def test_defaults_resolve_name_host_log_dir_and_killfile(tmp_path):
    settings = load_settings(data_dir=tmp_path)
    assert settings.name == f"{socket.gethostname().split('.')[0].lower()}:8000"
    assert settings.host and settings.dispatcher_url == "http://127.0.0.1:8004"
    assert settings.log_dir == tmp_path / "log" and settings.killfile == tmp_path / "killfile"
    assert settings.heartbeat_interval == 8.0 and settings.sysinfo_interval == 900.0
    assert settings.isolation == "auto" and settings.kill_grace == 10.0
    assert settings.log_max_bytes == 100 * 1024 * 1024 and settings.max_commands == 0


def test_the_environment_and_set_override_the_file(tmp_path, monkeypatch):
    path = tmp_path / "worker.yml"
    path.write_text("port: 9000\npools: [lighting]\nheartbeat_interval: 2s\n")
    monkeypatch.setenv("PULI_WORKER_PORT", "9001")
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    args = parser.parse_args(["--config", str(path), "--set", "name=Render01:9001"])
    settings = worker_settings.load_settings(args)
    assert settings.port == 9001 and settings.pools == ("lighting",)
    assert settings.heartbeat_interval == 2.0 and settings.name == "render01:9001"


def test_bad_settings_stop_the_start_with_the_key_and_reason(tmp_path):
    out = run_worker("--set", "prot=1", "--set", "heartbeat_interval=soon", "--set", "isolation=jail")
    assert out.returncode == 2
    assert "did you mean 'port'" in out.stderr and "heartbeat_interval" in out.stderr
    assert "isolation" in out.stderr and "cgroup2" in out.stderr
    assert "Traceback" not in out.stderr


def test_check_config_names_the_file_key_and_reason(tmp_path):
    bad = tmp_path / "worker.yml"
    bad.write_text("name: 'not a name!'\nkill_grace: -1\n")
    out = run_worker("--check-config", str(bad))
    assert out.returncode == 1
    assert f"{bad}: key 'name'" in out.stderr and f"{bad}: key 'kill_grace'" in out.stderr
    good = tmp_path / "good.yml"
    good.write_text("port: 8001\npools: [comp]\n")
    assert run_worker("--check-config", str(good)).returncode == 0


def test_an_isolation_the_host_cannot_give_is_refused_at_start(tmp_path):
    out = run_worker("--set", f"data_dir={tmp_path}", "--set", "isolation=cgroup2",
                     "--set", f"cgroup_root={tmp_path / 'no-cgroups'}")
    assert out.returncode == 2
    assert "isolation cgroup2 was asked for" in out.stderr and "Traceback" not in out.stderr


def test_a_busy_port_is_an_error_without_traceback(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = run_worker("--set", f"data_dir={tmp_path}", "--set", "address=127.0.0.1",
                         "--set", f"port={port}", "--set", "isolation=pgroup")
    assert out.returncode == 1
    assert "Address already in use" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("name", ["render01:8000", "render-01.farm:8000", "render01"])
def test_render_node_names(name):
    assert load_settings(name=name).name == name


def test_the_token_file_is_read_only_when_its_owner_alone_may_read_it(tmp_path):
    token_file = tmp_path / "worker.token"
    token_file.write_text("puli_abc\n")
    token_file.chmod(0o640)
    with pytest.raises(config.ConfigError, match="chmod 600") as caught:
        load_settings(data_dir=tmp_path, token_file=token_file)
    assert "puli_abc" not in str(caught.value)
    token_file.chmod(0o600)
    assert load_settings(data_dir=tmp_path, token_file=token_file).token == "puli_abc"
    token_file.write_text("")
    with pytest.raises(config.ConfigError, match="empty"):
        load_settings(data_dir=tmp_path, token_file=token_file)
    with pytest.raises(config.ConfigError, match="tls_cert and tls_key"):
        load_settings(data_dir=tmp_path, tls_cert=tmp_path / "node.pem")


def test_command_umask_is_quoted_octal_from_the_file_the_environment_and_set(tmp_path, monkeypatch):
    assert load_settings(data_dir=tmp_path).command_umask == 0o022
    path = tmp_path / "worker.yml"
    path.write_text("command_umask: '0002'\n")
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    assert worker_settings.load_settings(parser.parse_args(["--config", str(path)])).command_umask == 0o002
    monkeypatch.setenv("PULI_WORKER_COMMAND_UMASK", "007")
    assert worker_settings.load_settings(parser.parse_args([])).command_umask == 0o007
    args = parser.parse_args(["--set", "command_umask=0027"])
    assert worker_settings.load_settings(args).command_umask == 0o027
    # Unquoted, YAML reads 0022 as octal and 22 as decimal: refused, with the way to write it.
    path.write_text("command_umask: 22\n")
    out = run_worker("--check-config", str(path))
    assert out.returncode == 1
    assert f"{path}: key 'command_umask'" in out.stderr and "quoted, e.g. '0022'" in out.stderr
