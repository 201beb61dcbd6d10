"""The plan of a command: the steps (processes) it runs as, one after the other, and how their
output turns into progress."""
import sys

from puli.commandwatcher.progress import make_reader
from puli.commandwatcher.runner import BUILTIN, canonical_name, load_runner_class
from puli.commandwatcher.runners import Step

# Runners whose work is plain processes: the watcher runs those itself, without a Python child.
COMMAND_LINE_RUNNERS = {BUILTIN + "DefaultCommandRunner", BUILTIN + "CommandLineRunner"}


class Plan:
    """The steps to run, whether they report through a pipe (a Python runner child), and the
    output reader that turns their lines into progress (command-line runners only)."""

    def __init__(self, steps, reports, read):
        self.steps = steps
        self.reports = reports
        self.read = read


def make_plan(assignment, assignment_path):
    """The plan of `assignment`; raises RunnerLoadError, ValidationError or UnknownParser when it
    names a runner, arguments or a parser that cannot be run."""
    name = canonical_name(assignment.runner)
    arguments = dict(assignment.arguments or {})
    if name in COMMAND_LINE_RUNNERS:
        runner = load_runner_class(name)()
        runner.validate(arguments)
        read = make_reader(assignment.parser or arguments.get("parser"), arguments)
        return Plan(runner.steps(arguments), reports=False, read=read)
    # User code runs in a child process: it can be killed with its group, and cannot take
    # the watcher down with it.
    argv = [sys.executable, "-u", "-m", "puli.commandwatcher.child", str(assignment_path)]
    return Plan([Step(argv, f"runner {name}")], reports=True, read=None)
