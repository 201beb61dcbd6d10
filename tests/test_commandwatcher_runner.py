"""Runner parameters and validation, the built-in runners' steps, loading by name, and the log file."""
from pathlib import Path

import pytest

from puli.commandwatcher.logs import CommandLog
from puli.commandwatcher.runner import BooleanParameter, CommandError, CommandRunner, FloatParameter, \
    IntegerParameter, RangeError, RunnerLoadError, StringListParameter, StringParameter, ValidationError, \
    load_runner_class, wants_stats
from puli.commandwatcher.runners import CommandLineRunner, DefaultCommandRunner


class RenderRunner(CommandRunner):
    scene = StringParameter(mandatory=True)
    layers = StringListParameter(default=["beauty"])
    samples = IntegerParameter(default=64, min=1, max=4096)
    scale = FloatParameter(default=1.0, min=0.1, max=2.0)
    denoise = BooleanParameter(default=True)

    def execute(self, arguments, updateCompletion, updateMessage):
        pass


class BigRenderRunner(RenderRunner):
    samples = IntegerParameter(default=1024, min=1, max=65536)
    extra = StringParameter()

    def execute(self, arguments, updateCompletion, updateMessage, updateStats):
        pass


def test_parameters_are_collected_with_inheritance_and_overrides():
    assert list(RenderRunner.parameters) == ["scene", "layers", "samples", "scale", "denoise"]
    assert list(BigRenderRunner.parameters) == ["scene", "layers", "samples", "scale", "denoise", "extra"]
    assert BigRenderRunner.parameters["samples"].default == 1024
    assert RenderRunner.parameters["samples"].default == 64


def test_validate_applies_defaults_and_casts_in_place():
    arguments = {"scene": "shot.blend", "samples": "128", "scale": 1, "denoise": "no", "other": [1]}
    assert RenderRunner().validate(arguments) is arguments
    assert arguments == {"scene": "shot.blend", "layers": ["beauty"], "samples": 128, "scale": 1.0,
                         "denoise": False, "other": [1]}
    assert RenderRunner().validate({"scene": "s", "samples": 12.0})["samples"] == 12


@pytest.mark.parametrize("arguments, error, message", [
    ({}, ValidationError, "parameter 'scene': is mandatory"),
    ({"scene": 3}, ValidationError, "parameter 'scene': expected a string, got 3"),
    ({"scene": "s", "layers": "beauty"}, ValidationError, "parameter 'layers': expected a list of strings"),
    ({"scene": "s", "samples": "many"}, ValidationError, "parameter 'samples': expected an integer, got 'many'"),
    ({"scene": "s", "samples": 1.5}, ValidationError, "parameter 'samples': expected an integer, got 1.5"),
    ({"scene": "s", "samples": True}, ValidationError, "parameter 'samples': expected an integer, got True"),
    ({"scene": "s", "samples": 0}, RangeError, "parameter 'samples': 0 is below the minimum 1"),
    ({"scene": "s", "samples": 5000}, RangeError, "parameter 'samples': 5000 is above the maximum 4096"),
    ({"scene": "s", "scale": 3}, RangeError, "parameter 'scale': 3.0 is above the maximum 2.0"),
    ({"scene": "s", "denoise": "perhaps"}, ValidationError, "parameter 'denoise': expected a boolean"),
])
def test_validation_errors_name_the_parameter(arguments, error, message):
    with pytest.raises(error) as caught:
        RenderRunner().validate(arguments)
    assert str(caught.value).startswith(message)
    assert caught.value.parameter == message.split("'")[1]


def test_update_stats_is_passed_only_when_named():
    assert not wants_stats(RenderRunner())
    assert wants_stats(BigRenderRunner())

    class KwargsRunner(CommandRunner):
        def execute(self, arguments, updateCompletion, updateMessage, **callbacks):
            pass
    assert wants_stats(KwargsRunner())


def test_default_runner_runs_one_process_per_frame_with_substitution():
    runner = DefaultCommandRunner()
    arguments = runner.validate({"cmd": "render -f %%MI_FRAME%% -s %%MI_START%% -e %%MI_END%% 'x y'",
                                 "start": "10", "end": 12})
    steps = runner.steps(arguments)
    assert [step.label for step in steps] == ["frame 10", "frame 11", "frame 12"]
    assert steps[1].argv == ["/bin/sh", "-c", "render -f 11 -s 10 -e 12 'x y'"]
    argv_steps = runner.steps(runner.validate({"cmd": ["render", "-f", "%%MI_FRAME%%", "$HOME;"]}))
    assert [step.argv for step in argv_steps] == [["render", "-f", "1", "$HOME;"]]
    with pytest.raises(ValidationError, match="'end': 1 is before start 2"):
        runner.validate({"cmd": "x", "start": 2, "end": 1})
    with pytest.raises(ValidationError, match="'cmd': expected a non-empty shell command"):
        runner.validate({"cmd": ""})


def test_command_line_runner_executes_in_process():
    # What a runner child does for a DefaultCommandRunner subclass: run, parse, report.
    reported = {"completion": [], "message": []}
    arguments = CommandLineRunner().validate({"args": "echo PULI_PROGRESS 0.5; echo 'PULI_MESSAGE half'"})
    CommandLineRunner().execute(arguments, reported["completion"].append, reported["message"].append)
    assert reported == {"completion": [0.5, 1.0], "message": ["command", "half"]}
    runner = DefaultCommandRunner()
    with pytest.raises(CommandError, match="frame 2: exit code 4"):
        runner.execute(runner.validate({"cmd": "[ %%MI_FRAME%% = 1 ] || exit 4", "end": 2}),
                       lambda c: None, lambda m: None)


def test_runners_are_loaded_by_dotted_path_and_puli_names():
    assert load_runner_class("puliclient.jobs.DefaultCommandRunner") is DefaultCommandRunner
    assert load_runner_class("puliclient.contrib.commandlinerunner.CommandLineRunner") is CommandLineRunner
    assert load_runner_class("puli.commandwatcher.runners.CommandLineRunner") is CommandLineRunner
    with pytest.raises(RunnerLoadError, match="cannot import runner module 'nowhere'"):
        load_runner_class("nowhere.Runner")
    with pytest.raises(RunnerLoadError, match="is not a CommandRunner class"):
        load_runner_class("puli.commandwatcher.runners.Step")
    with pytest.raises(RunnerLoadError, match="dotted path"):
        load_runner_class("Runner")


def test_log_rotates_at_line_ends_and_keeps_two_backups(tmp_path):
    path = tmp_path / "logs" / "7.log"
    log = CommandLog(path, max_bytes=1024)
    for batch in range(10):
        log.write(b"".join(b"%03d-%03d %s\n" % (batch, n, b"x" * 40) for n in range(10)))  # 480 bytes
    log.note("exit code 0")
    log.close()
    files = [path, Path(f"{path}.1"), Path(f"{path}.2")]
    assert not Path(f"{path}.3").exists()
    for file in files:
        data = file.read_bytes()
        assert 0 < len(data) <= 1024 and data.endswith(b"\n")
    everything = b"".join(f.read_bytes() for f in reversed(files))
    assert everything.endswith(b"exit code 0\n") and b"009-009 " in everything
    assert b"".join(f.read_bytes() for f in reversed(files)).count(b"\n") == sum(
        f.read_bytes().count(b"\n") for f in files)


def test_log_splits_a_line_longer_than_a_file_and_appends_on_reopen(tmp_path):
    path = tmp_path / "7.log"
    log = CommandLog(path, max_bytes=1024)
    log.write(b"y" * 3000 + b"\n")
    log.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["7.log", "7.log.1", "7.log.2"]
    assert all(p.stat().st_size <= 1024 for p in tmp_path.iterdir())
    log = CommandLog(path, max_bytes=1024)         # a second attempt appends
    size = path.stat().st_size
    log.write(b"attempt 2\n")
    log.close()
    assert path.stat().st_size == size + 10

