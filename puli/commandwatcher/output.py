"""The command's output side: its output lines go to the command's log and, read for progress,
to the state; a Python runner child's JSON reports go to the state; apply_progress() is the one
way either changes the state's completion, message and stats."""
import json
import math

from puli.commandwatcher.progress import Progress

MAX_PARTIAL_LINE = 65536    # output without a line end is logged once it gets this long


def apply_progress(state, progress, log=None):
    """Apply a Progress to the state: its completion (a fraction of the whole command), its
    message, its stats (merged into the state's, unless they would take more than the dispatcher
    keeps: the first refusal is noted in the `log`, the others counted); a field None changes
    nothing."""
    if progress.completion is not None:
        state.update(completion=progress.completion)
    if progress.message is not None:
        state.update(message=progress.message)
    if progress.stats:
        refused = state.merge_stats(progress.stats)
        if refused is not None and log is not None and state.stats_refused == 1:
            log.note(f"stats update ignored: {refused}; the stats stay as they were, and later "
                     "updates that do not fit are ignored too")


class CommandOutput:
    """One step's output (stdout and stderr share a pipe): logged a complete line at a time, and
    read for progress where the plan has a reader."""

    def __init__(self, log, state, read, step, steps):
        self.log = log
        self.state = state
        self.read = read            # line -> Progress or None; None: the output is only logged
        self.step = step            # this step's index among the plan's `steps`
        self.steps = steps
        self.pending = b""          # the start of a line whose end has not come yet

    def feed(self, chunk):
        data = self.pending + chunk
        cut = max(data.rfind(b"\n"), data.rfind(b"\r")) + 1
        if cut == 0 and len(data) < MAX_PARTIAL_LINE:
            self.pending = data
            return
        cut = cut or len(data)
        complete, self.pending = data[:cut], data[cut:]
        self.log.write(complete)
        self.parse(complete)

    def end(self):
        """The step is over: a last line without its line end is logged and read all the same."""
        if self.pending:
            self.log.write(self.pending + b"\n")
            self.parse(self.pending)
            self.pending = b""

    def parse(self, data):
        if self.read is None:
            return
        for raw in data.splitlines():
            if not raw:
                continue
            progress = self.read(raw.decode("utf-8", "replace"))
            if progress is None:
                continue
            if progress.completion is not None:
                # The line's completion is of this step; the state's is of the whole command.
                progress = progress._replace(completion=round((self.step + progress.completion) / self.steps, 6))
            apply_progress(self.state, progress, self.log)


class RunnerReports:
    """A Python runner child's reports, JSON lines on a pipe of their own (see child.py): progress
    while it runs, then its outcome."""

    def __init__(self, log, state):
        self.log = log
        self.state = state
        self.pending = b""          # the start of a report whose line end has not come yet
        self.outcome = None         # ("done" | "error", message): the runner's last word

    def feed(self, chunk):
        data = self.pending + chunk
        *lines, self.pending = data.split(b"\n")
        for line in lines:
            try:
                report = json.loads(line)
            except (ValueError, RecursionError):
                report = None
            if not isinstance(report, dict):
                self.log.note(f"unreadable report from the runner: {line[:200]!r}")
                continue
            if "outcome" in report:
                self.outcome = (report["outcome"], str(report.get("message") or ""))
            completion = report.get("completion")
            apply_progress(self.state, Progress(
                completion=(min(1.0, max(0.0, float(completion)))
                            if isinstance(completion, (int, float)) and math.isfinite(completion) else None),
                # An outcome's message is the final one: the watcher's conclusion decides on it.
                message=str(report["message"]) if "message" in report and "outcome" not in report else None,
                stats=report["stats"] if isinstance(report.get("stats"), dict) else None), self.log)
