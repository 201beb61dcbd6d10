"""The built-in command-line runners: DefaultCommandRunner (one step per frame, with frame
substitution) and CommandLineRunner (one step).

Both describe their work as a list of `Step`s. The watcher runs those itself, each as a direct
subprocess (no Python in between, so starting is fast); `execute()` does the same for a subclass
run in a runner child process, or for a local run.
"""
import os
import signal
import subprocess
import sys
from collections import namedtuple

from puli.commandwatcher.progress import make_reader
from puli.commandwatcher.runner import CommandError, CommandRunner, IntegerParameter, Parameter, ValidationError

SHELL = "/bin/sh"


# One process to run: its argv and what the log calls it. (A step, not a "run": a run is a
# command's attempt on a node.)
Step = namedtuple("Step", "argv label")


class CommandParameter(Parameter):
    """A command: a shell string (run through /bin/sh -c) or a list of strings (an argv)."""

    def validate(self, value):
        if isinstance(value, str) and value.strip():
            return value
        if isinstance(value, (list, tuple)) and value and all(isinstance(item, str) for item in value):
            return list(value)
        self.fail(f"expected a non-empty shell command string or list of strings, got {value!r}")


def command_argv(cmd):
    """argv for a command as the user gave it: a shell string is the user's own shell command."""
    return [SHELL, "-c", cmd] if isinstance(cmd, str) else list(cmd)


def substitute(cmd, frame, start, end):
    """Frame numbers put into the command (the only data ever placed into it)."""
    def one(text):
        return (text.replace("%%MI_FRAME%%", str(frame))
                    .replace("%%MI_START%%", str(start))
                    .replace("%%MI_END%%", str(end)))
    return one(cmd) if isinstance(cmd, str) else [one(item) for item in cmd]


class CommandLineRunnerBase(CommandRunner):
    """A runner whose work is a list of processes; execute() runs them one after the other."""

    def steps(self, arguments):
        """The processes to run, for validated arguments."""
        raise NotImplementedError

    def execute(self, arguments, updateCompletion, updateMessage, updateStats=None):
        steps = self.steps(arguments)
        read = make_reader(arguments.get("parser"), arguments)
        for index, step in enumerate(steps):
            updateMessage(step.label)
            status = _run_with_progress(step.argv, read, lambda fraction, index=index: updateCompletion(
                (index + fraction) / len(steps)), updateMessage, updateStats)
            if status > 0:
                raise CommandError(f"{step.label}: exit code {status}")
            if status < 0:
                raise CommandError(f"{step.label}: killed by signal {signal.Signals(-status).name}")
            updateCompletion((index + 1) / len(steps))


def _run_with_progress(argv, read, on_fraction, on_message, on_stats):
    """Run argv with its output copied to ours line by line, and progress lines reported."""
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=os.environ)
    for raw in process.stdout:
        sys.stdout.buffer.write(raw)
        sys.stdout.flush()
        progress = read(raw.decode("utf-8", "replace").rstrip("\r\n"))
        if progress is None:
            continue
        if progress.completion is not None:
            on_fraction(progress.completion)
        if progress.message is not None:
            on_message(progress.message)
        if progress.stats is not None and on_stats is not None:
            on_stats(progress.stats)
    return process.wait()


class DefaultCommandRunner(CommandLineRunnerBase):
    """Runs `cmd` once per frame of start..end, with %%MI_FRAME%%, %%MI_START%% and %%MI_END%%
    replaced by the frame numbers."""

    cmd = CommandParameter(mandatory=True)
    start = IntegerParameter(default=1)
    end = IntegerParameter(default=1)
    packetSize = IntegerParameter(default=1, min=1)     # used by the decomposer, accepted here

    def validate(self, arguments):
        super().validate(arguments)
        if arguments["end"] < arguments["start"]:
            raise ValidationError("end", f"{arguments['end']} is before start {arguments['start']}")
        return arguments

    def steps(self, arguments):
        start, end = arguments["start"], arguments["end"]
        return [Step(command_argv(substitute(arguments["cmd"], frame, start, end)), f"frame {frame}")
                for frame in range(start, end + 1)]


class CommandLineRunner(CommandLineRunnerBase):
    """Runs the shell command line `args` once (Puli's puliexec runner)."""

    args = CommandParameter(mandatory=True)

    def steps(self, arguments):
        return [Step(command_argv(arguments["args"]), "command")]
