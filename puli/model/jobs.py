"""The job tree: TaskGroups and Tasks (one tree, node ids are the API's ids), and their Commands."""
import json

from .status import CommandStatus, NodeStatus, N_COMMAND_STATUSES, node_status


class Dependency:
    """`node` may not run until `target` is in one of `statuses` (NodeStatus values)."""

    __slots__ = ("node", "target_id", "statuses", "target", "satisfied")

    def __init__(self, node, target_id, statuses):
        self.node = node
        self.target_id = target_id
        self.statuses = frozenset(statuses)
        self.target = None          # the Node, once resolved; None for an archived target
        self.satisfied = False

    def as_wire(self):
        return [self.target_id, sorted(int(s) for s in self.statuses)]


class Node:
    """What TaskGroups and Tasks share: identity, scheduling knobs, aggregated counters."""

    is_task = False

    def __init__(self, id, name, parent=None, user="", priority=0, dispatch_key=0.0, max_rn=-1,
                 tags=None, environment=None, arguments=None, requirements=None, timer=None,
                 creation_time=0.0):
        self.id = id
        self.name = name
        self.parent = parent
        self.job = self if parent is None or parent.parent is None else parent.job
        self.user = user
        self.priority = priority
        self.dispatch_key = dispatch_key
        self.max_rn = max_rn            # caps this subtree's running commands; -1 = unbounded
        self.paused = False
        self.tags = tags or {}
        self.environment = environment or {}
        self.arguments = arguments or {}
        self.requirements = requirements or {}
        self.timer = timer
        self.creation_time = creation_time
        self.start_time = None
        self.update_time = creation_time
        self.end_time = None
        self.dependencies = []          # Dependency objects this node waits for
        self.dependents = []            # Dependency objects that wait for this node
        self.unsatisfied = 0            # how many of self.dependencies are not satisfied
        self.counts = [0] * N_COMMAND_STATUSES
        self.completion_sum = 0.0
        self.status = NodeStatus.DONE
        self.archived = False
        # Job-level state, used on top-level nodes only.
        self.share = None               # the job's PoolShare
        self.ready_tasks = None         # dict Task -> None, tasks with dispatchable READY commands
        self.rn_errors = None           # render node name -> errors of this job there

    # -- aggregation -----------------------------------------------------------------------
    @property
    def command_count(self):
        return sum(self.counts)

    @property
    def completion(self):
        n = sum(self.counts)
        return self.completion_sum / n if n else 1.0

    @property
    def active_count(self):
        c = self.counts
        return c[CommandStatus.ASSIGNED] + c[CommandStatus.RUNNING] + c[CommandStatus.FINISHING]

    def derive_status(self):
        return node_status(self.counts, self.paused)

    def ancestors(self):
        """This node and its ancestors up to (and including) the farm root."""
        node = self
        while node is not None:
            yield node
            node = node.parent

    def inherited(self, field):
        """This node's `arguments` or `environment` with what its groups give: outer groups
        first, inner ones override them, the node itself last (the nearest value wins)."""
        out = {}
        for node in reversed([n for n in self.ancestors() if n.parent is not None]):
            out.update(getattr(node, field))
        return out

    def blocked(self):
        """True when this node or an ancestor waits for an unsatisfied dependency."""
        node = self
        while node is not None:
            if node.unsatisfied:
                return True
            node = node.parent
        return False

    @property
    def is_job(self):
        return self.parent is not None and self.parent.parent is None

    @property
    def pool(self):
        return self.job.share.pool if self.job.share else None


class TaskGroup(Node):
    """A container of TaskGroups and Tasks; the top-level one of a submission is a job."""

    def __init__(self, id, name, strategy="", **kw):
        super().__init__(id, name, **kw)
        self.strategy = strategy
        self.children = []

    def walk(self):
        """Every node of the subtree, this one first (iterative: trees can be deep)."""
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            if not node.is_task:
                stack.extend(reversed(node.children))

    def tasks(self):
        return (n for n in self.walk() if n.is_task)


class Task(Node):
    """A leaf of the tree: a runner with its arguments, split into Commands."""

    is_task = True

    def __init__(self, id, name, runner="", min_cores=1, max_cores=0, ram_use=0, licenses=(),
                 max_attempt=1, max_run_time=0, validation_expression="", runner_packages="",
                 watcher_packages="", **kw):
        super().__init__(id, name, **kw)
        self.runner = runner
        self.min_cores = min_cores      # 0 = the whole render node
        self.max_cores = max_cores      # 0 = every free core of the render node
        self.ram_use = ram_use          # MB reserved per command
        self.licenses = tuple(licenses)
        self.max_attempt = max_attempt
        self.max_run_time = max_run_time  # seconds, 0 = unlimited (enforced by the worker)
        self.validation_expression = validation_expression
        self.runner_packages = runner_packages
        self.watcher_packages = watcher_packages
        self.commands = []
        self.ready = None               # deque of commands that may be READY (lazily pruned)
        self.avg_times = None           # [count, sum, min, max] of seconds per frame
        self.chunk_size = None          # adaptive OpenJD chunks: the size last cut to (chunking.py)

    def walk(self):
        yield self

    def tasks(self):
        yield self

    @property
    def lic(self):
        return "&".join(self.licenses)


class Command:
    """One unit of execution on one render node."""

    __slots__ = ("id", "task", "description", "status", "completion", "attempt", "start_time",
                 "update_time", "end_time", "render_node", "assignment", "cores", "ram",
                 "message", "stats", "args_json", "nb_frames", "archived", "ready_time")

    def __init__(self, id, task, description, args_json="{}", status=CommandStatus.READY,
                 nb_frames=1):
        self.id = id
        self.task = task
        self.description = description
        self.status = status
        self.completion = 0.0
        self.attempt = 0
        self.start_time = None
        self.update_time = None
        self.end_time = None
        self.render_node = None         # the RenderNode it runs (or last ran) on
        self.assignment = 0             # fencing token of the current assignment, 0 = none
        self.cores = 0
        self.ram = 0
        self.message = ""
        self.stats = None
        self.args_json = args_json      # kept as text: parsed only when a worker needs it
        self.nb_frames = nb_frames
        self.archived = False
        self.ready_time = None          # when it last became READY, until a run of it starts

    @property
    def arguments(self):
        return json.loads(self.args_json) if self.args_json else {}

    def effective_arguments(self):
        """What the command runs with: its task's inherited arguments, then its own."""
        arguments = self.task.inherited("arguments")
        arguments.update(self.arguments)
        return arguments


def new_command(id, task, description, args_json, nb_frames):
    """A command appended to its task (a build or a restore: not yet in any farm)."""
    cmd = Command(id, task, description, args_json, nb_frames=nb_frames)
    task.commands.append(cmd)
    return cmd


def new_dependency(node, target_id, statuses):
    """`node` waits for node `target_id` to reach one of `statuses`; resolved by Farm.publish."""
    dep = Dependency(node, target_id, statuses)
    node.dependencies.append(dep)
    return dep
