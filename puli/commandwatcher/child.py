"""The runner host: a child process of the watcher that loads a Python runner class, validates
the arguments and runs execute(), reporting to the watcher as JSON lines on the pipe whose fd is
in PULI_REPORT_FD.

Reports: ``{"completion": 0.5}``, ``{"message": "..."}``, ``{"stats": {...}}``, then one
``{"outcome": "done" | "error", "message": "..."}``. Its stdout and stderr go to the log.
Usage: ``python -m puli.commandwatcher.child <command dir>/assignment.json``.
"""
import json
import logging
import os
import sys
import traceback

from puli.commandwatcher.runner import CommandDone, CommandError, RunnerLoadError, ValidationError, \
    load_runner_class, wants_stats


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    report_fd = int(os.environ.pop("PULI_REPORT_FD"))
    os.set_inheritable(report_fd, False)    # the runner's own subprocesses have no business with it
    report = os.fdopen(report_fd, "w", buffering=1)

    def send(**fields):
        report.write(json.dumps(fields) + "\n")

    # Runners log through self.log: let it reach the command's log.
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    with open(argv[0]) as f:
        assignment = json.load(f)

    try:
        runner = load_runner_class(assignment.get("runner"))()
        arguments = runner.validate(dict(assignment.get("arguments") or {}))
    except (RunnerLoadError, ValidationError) as exc:
        send(outcome="error", message=f"invalid arguments: {exc}" if isinstance(exc, ValidationError) else str(exc))
        return 1
    except Exception as exc:    # the runner's own module or constructor failed: user code
        traceback.print_exc()
        send(outcome="error", message=f"cannot load runner {assignment.get('runner')!r}: {type(exc).__name__}: {exc}")
        return 1

    def update_completion(completion):
        send(completion=float(completion))

    def update_message(message):
        send(message=str(message))

    def update_stats(stats):
        send(stats=dict(stats))

    optional = {"updateStats": update_stats} if wants_stats(runner) else {}
    try:
        runner.execute(arguments, update_completion, update_message, **optional)
    except CommandDone as exc:
        send(outcome="done", message=str(exc) or "stopped manually")
        return 0
    except CommandError as exc:
        send(outcome="error", message=str(exc) or type(exc).__name__)
        return 1
    except Exception as exc:    # a bug in the runner: its traceback goes to the log
        traceback.print_exc()
        send(outcome="error", message=f"{type(exc).__name__}: {exc}")
        return 1
    send(outcome="done", message="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
