"""The simulator's own account of every run, to tell at the end what ran twice and what was lost.

A run is one assignment of a command to a simulated node: it starts when the node accepts it
and ends with the status the node reports, or is dropped (a stop order from the dispatcher, a
report refused as stale) or abandoned (its node died). Nothing here trusts the dispatcher:

- **ran twice**: a command with more than one run that ended DONE, or with two runs that were
  under way at the same moment (on one node or two);
- **lost**: a command whose DONE the dispatcher took and committed, yet which it hands out
  again; or, when the dispatcher's final statuses are given, a command whose last run here
  ended DONE, taken by the dispatcher, and which it shows otherwise at the end.
"""
from dataclasses import dataclass, field


@dataclass
class Run:
    command_id: int
    assignment: int
    node: str
    started: float
    ended: float = None
    status: str = None          # the final status the node reported
    outcome: str = None         # "ended", "dropped", "abandoned"
    taken: bool = False         # the dispatcher took its end (2xx)
    committed: bool = False     # ... and committed it


@dataclass
class Ledger:
    runs: dict = field(default_factory=dict)        # command id -> [Run], in start order
    completions: list = field(default_factory=list)  # times of DONE ends, in order
    starts: int = 0
    task_ids: set = field(default_factory=set)     # the tasks the runs were of

    def start(self, command_id, assignment, node, now, task_id=None):
        run = Run(command_id, assignment, node, now)
        if task_id is not None:
            self.task_ids.add(task_id)
        self.runs.setdefault(command_id, []).append(run)
        self.starts += 1
        return run

    def end(self, run, status, now):
        run.ended, run.status, run.outcome = now, status, "ended"
        if status == "DONE":
            self.completions.append(now)

    def drop(self, run, now, outcome="dropped"):
        if run.outcome is None:
            run.ended, run.outcome = now, outcome

    def take(self, run):
        run.taken = True

    def commit(self, run):
        run.taken = run.committed = True

    # -- the verdict ----------------------------------------------------------------------------
    def ran_twice(self):
        """{command id: why} for every command that ran more than once."""
        found = {}
        for command_id, runs in self.runs.items():
            done = [r for r in runs if r.status == "DONE"]
            if len(done) > 1:
                found[command_id] = f"{len(done)} runs ended DONE: " + ", ".join(_show(r) for r in done)
                continue
            for earlier, later in zip(runs, runs[1:]):
                if earlier.ended is None or later.started < earlier.ended:
                    found[command_id] = f"two runs at once: {_show(earlier)} and {_show(later)}"
                    break
        return found

    def lost(self, final_statuses=None):
        """{command id: why} for every command lost. `final_statuses`: {command id: status name}
        as the dispatcher shows them at the end. A command still queued is not lost; one whose
        end the dispatcher took, or whose last run here ended DONE, and which it shows
        otherwise, is."""
        found = {}
        for command_id, runs in self.runs.items():
            last = runs[-1]
            committed = [r for r in runs if r.committed and r.status == "DONE"]
            if committed and committed[-1] is not last:
                found[command_id] = (f"its DONE on {committed[-1].node} was committed, and the "
                                     f"dispatcher handed it out again ({_show(last)})")
                continue
            status = (final_statuses or {}).get(command_id)
            if status is not None and status != "DONE" and last.status == "DONE" and last.taken:
                taken = "was committed" if last.committed else "was taken"
                found[command_id] = f"its DONE {taken}, and the dispatcher now says {status}"
        return found

    def summary(self, final_statuses=None):
        twice, lost = self.ran_twice(), self.lost(final_statuses)
        return {
            "commands": len(self.runs),
            "runs": self.starts,
            "done": len(self.completions),
            "ranTwice": {str(k): v for k, v in sorted(twice.items())},
            "lost": {str(k): v for k, v in sorted(lost.items())},
        }


def _show(run):
    end = f"{run.outcome} {run.status or ''}".strip() if run.outcome else "under way"
    return f"assignment {run.assignment} on {run.node} ({end})"
