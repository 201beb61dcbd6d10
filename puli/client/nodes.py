"""The nodes of a job script's tree: TaskGroup, Task and Command, with Puli's names and semantics.

Unlike Puli 1.7, a task keeps its own timer inside a group, a dependency may name a node of
another job by its id (``task.dependsOn(42)``), and ``Task(maxRunTime=seconds)`` kills a command
running longer than that. `Graph` (puli.client.graph) turns the tree into the wire format.
"""
import copy
import importlib
import json
import os
from datetime import datetime

from puli.model.errors import InvalidGraph
from puli.model.graph import decompose as _decompose
from puli.model.status import NodeStatus

from .errors import GraphConnectionError, GraphError

# Node statuses: dependency status lists are made of these.
BLOCKED = int(NodeStatus.BLOCKED)
READY = int(NodeStatus.READY)
RUNNING = int(NodeStatus.RUNNING)
DONE = int(NodeStatus.DONE)
ERROR = int(NodeStatus.ERROR)
CANCELED = int(NodeStatus.CANCELED)
PAUSED = int(NodeStatus.PAUSED)
NODE_STATUS_NAMES = {int(s): s.name for s in NodeStatus}

DEFAULT_RUNNER = "puli.commandwatcher.runners.DefaultCommandRunner"
DEFAULT_DECOMPOSER = "puli.client.jobs.DefaultTaskDecomposer"
DEFAULT_STRATEGY = "octopus.dispatcher.strategies.FifoStrategy"

# Names of our own runners under puli.client (what a script gets by replacing `puliclient` with
# `puli.client`): sent as the watcher's names, so that the watcher runs them without a Python child.
# Puli 1.7 names (puliclient.jobs.DefaultCommandRunner...) are sent as they are: the watcher maps them.
RUNNER_NAMES = {
    "puli.client.jobs.DefaultCommandRunner": "puli.commandwatcher.runners.DefaultCommandRunner",
    "puli.client.DefaultCommandRunner": "puli.commandwatcher.runners.DefaultCommandRunner",
    "puli.client.contrib.commandlinerunner.CommandLineRunner": "puli.commandwatcher.runners.CommandLineRunner",
    "puli.client.jobs.CommandLineRunner": "puli.commandwatcher.runners.CommandLineRunner",
    "puli.client.CommandLineRunner": "puli.commandwatcher.runners.CommandLineRunner",
    # Puli 1.7's callable runner lives here now.
    "puliclient.CallableRunner": "puli.client.runner.CallableRunner",
    "puliclient.runner.CallableRunner": "puli.client.runner.CallableRunner",
    "puli.client.CallableRunner": "puli.client.runner.CallableRunner",
}
# Decomposers that mean "the default decomposition" (start/end/packetSize or framesList).
_DEFAULT_DECOMPOSERS = {None, DEFAULT_DECOMPOSER, "puliclient.jobs.DefaultTaskDecomposer",
                        "puli.client.DefaultTaskDecomposer"}


# -- helpers -------------------------------------------------------------------------------------

class HierarchicalDict(dict):
    """A dict whose missing keys are looked up in its parent's (a group's arguments or environment),
    for local lookups only: what is sent is the node's own items."""

    def __init__(self, parent=None, args=None):
        super().__init__(args or {})
        self.parent = parent

    def __getitem__(self, name):
        try:
            return dict.__getitem__(self, name)
        except KeyError:
            if self.parent is not None:
                return self.parent[name]
            raise

    def flat(self):
        """Every key visible from here, the nearest value winning."""
        chain = []
        node = self
        while node is not None:
            chain.append(node)
            node = node.parent if isinstance(node, HierarchicalDict) else None
        out = {}
        for d in reversed(chain):
            out.update(dict.items(d))
        return out

    def __copy__(self):
        return HierarchicalDict(self.parent, dict(self))

    def __deepcopy__(self, memo):
        return HierarchicalDict(self.parent, copy.deepcopy(dict(self), memo))


def _statuses(value, where):
    if not isinstance(value, (list, tuple)) or not value:
        raise GraphConnectionError(f"{where}: the statuses must be a non-empty list such as [DONE]")
    out = []
    for status in value:
        if isinstance(status, bool) or not isinstance(status, int) or int(status) not in NODE_STATUS_NAMES:
            raise GraphConnectionError(f"{where}: {status!r} is not a node status (0..6: BLOCKED..PAUSED)")
        out.append(int(status))
    return out


def _timer(value):
    """A timer as seconds since the epoch (Puli's form); a datetime is accepted too."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise GraphError(f"timer must be a time in seconds since the epoch (or a datetime), not {value!r}")
    return value


def _load(name, kind):
    """A decomposer or expander: a callable, or the dotted path of one."""
    if name is None or callable(name):
        return name
    if not isinstance(name, str) or "." not in name:
        raise GraphError(f"{kind} must be a callable or a dotted path module.Name, not {name!r}")
    module_name, _, attr = name.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise GraphError(f"cannot import the {kind} {name!r}: {exc}") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise GraphError(f"no {kind} {attr!r} in module {module_name!r}") from None


def _is_node(value):
    return isinstance(value, (Task, TaskGroup))


def _dependency_key(node):
    """A dependency target: a Task/TaskGroup of the graph, or the id of an existing farm node."""
    if _is_node(node):
        return node
    if isinstance(node, dict) and isinstance(node.get("nodeId"), int):
        return int(node["nodeId"])
    if isinstance(node, int) and not isinstance(node, bool) and node > 0:
        return node
    raise GraphConnectionError(f"a dependency target must be a Task, a TaskGroup or the id of an "
                               f"existing node, not {node!r}")


def _default_packages():
    resolve = os.environ.get("REZ_USED_RESOLVE", "")
    watcher = " ".join(p for p in resolve.split() if p.startswith("pulicontrib"))
    return resolve, watcher


# -- the tree --------------------------------------------------------------------------------------

class Command:
    """A unit of work of a task: runs its task's runner with these arguments on one render node."""

    def __init__(self, description, task, arguments=None, runnerPackages=None, watcherPackages=None):
        self.description = description
        self.task = task
        self.arguments = copy.copy(dict(arguments or {}))
        self.runnerPackages = runnerPackages
        self.watcherPackages = watcherPackages

    def __repr__(self):
        return f"Command({self.description!r})"


class _Node:
    """What Tasks and TaskGroups share: dependencies, tags, environment."""

    def dependsOn(self, node, statusList=None):
        """Wait until `node` (a Task, a TaskGroup, or the id of an existing farm node) is in one of
        `statusList` (node statuses, default [DONE])."""
        statuses = _statuses([DONE] if statusList is None else statusList, f"{self!r}.dependsOn({node!r})")
        self.dependencies[_dependency_key(node)] = statuses
        return self

    def updateTags(self, pTags):
        self.tags.update(pTags)

    def setEnv(self, env):
        parent = self.environment.parent if isinstance(self.environment, HierarchicalDict) else None
        self.environment = HierarchicalDict(parent, env)


class Task(_Node):
    """A node that holds commands: a runner with its arguments, split into commands by decompose()."""

    def __init__(self, name, arguments=None, runner=DEFAULT_RUNNER, decomposer=None, runnerPackages=None,
                 watcherPackages=None, dependencies=None, maxRN=0, priority=0, dispatchKey=0,
                 environment=None, validator='0', minNbCores=1, maxNbCores=0, ramUse=0, requirements=None,
                 lic="", tags=None, timer=None, maxAttempt=1, maxRunTime=0):
        if not isinstance(name, str) or not name:
            raise GraphError(f"a task needs a non-empty name, not {name!r}")
        self.parent = None
        self.name = name
        self.runner = runner
        self.decomposerName = decomposer
        self.decomposer = decomposer
        self.arguments = HierarchicalDict(None, arguments or {})
        self.environment = HierarchicalDict(None, environment or {})
        self.dependencies = {}
        for node, statuses in (dependencies or {}).items():
            self.dependsOn(node, statuses)
        self.maxRN = maxRN
        self.priority = priority
        self.dispatchKey = dispatchKey
        self.validator = validator
        self.minNbCores = minNbCores
        self.maxNbCores = maxNbCores
        self.ramUse = ramUse
        self.requirements = dict(requirements or {})
        self.lic = lic
        self.tags = dict(tags or {})
        self.timer = _timer(timer)
        self.maxAttempt = maxAttempt
        self.maxRunTime = maxRunTime
        resolve, watcher = _default_packages()
        self.runnerPackages = runnerPackages if runnerPackages else resolve
        self.watcherPackages = watcherPackages if watcherPackages else watcher
        self.commands = []
        self.decomposed = False
        self.canBeDecomposed = True

    @property
    def decomposer(self):
        return self._decomposer

    @decomposer.setter
    def decomposer(self, value):
        self._decomposer = None if value in _DEFAULT_DECOMPOSERS else _load(value, "decomposer")
        self.decomposerName = value
        self.decomposed = False

    def addCommand(self, name, arguments, runnerPackages=None, watcherPackages=None):
        """Add a command by hand (a task with commands is not decomposed)."""
        command = Command(name, self, arguments, runnerPackages, watcherPackages)
        self.commands.append(command)
        return command

    def decompose(self):
        """Split the task into commands, once: the decomposer if one was given, else Puli's default
        (`start`/`end`/`packetSize` or `framesList`, commands named <task>_<first>_<last>; else one
        command named like the task). A task given commands by hand keeps them."""
        if self.decomposed:
            return self
        if not self.commands:
            if self._decomposer is not None:
                self._decomposer(self)
            else:
                try:
                    parts = _decompose(self.name, dict(self.arguments), f"task {self.name!r}")
                except InvalidGraph as exc:
                    raise GraphError(str(exc)) from None
                for description, args_json, _ in parts:
                    self.commands.append(Command(description, self, json.loads(args_json)))
        self.decomposed = True
        return self

    def setTimer(self, timer):
        self.timer = _timer(timer)

    def __repr__(self):
        return f"Task({self.name!r})"


class TaskGroup(_Node):
    """A node that holds Tasks and TaskGroups."""

    def __init__(self, name, expander=None, arguments=None, tags=None, environment=None, timer=None,
                 priority=0, dispatchKey=0):
        if not isinstance(name, str) or not name:
            raise GraphError(f"a task group needs a non-empty name, not {name!r}")
        self.parent = None
        self.name = name
        self.expanderName = expander
        self.expander = _load(expander, "expander")
        self.expanded = False
        self.arguments = HierarchicalDict(None, arguments or {})
        self.environment = HierarchicalDict(None, environment or {})
        self.requirements = {}
        self.dependencies = {}
        self.maxRN = 0
        self.priority = priority
        self.dispatchKey = dispatchKey
        self.strategy = DEFAULT_STRATEGY
        self.tasks = []
        self.taskGroups = []
        self.tags = dict(tags or {})
        self.timer = _timer(timer)

    @classmethod
    def createFromTask(cls, task):
        group = cls(task.name)
        group.arguments = task.arguments
        group.dependencies = task.dependencies
        group.environment = task.environment
        group.requirements = task.requirements
        return group

    def _adopt(self, node):
        if node.parent is not None and node.parent is not self:
            raise GraphError(f"{node!r} is already in {node.parent!r}")
        if node is self or (isinstance(node, TaskGroup) and self._has_ancestor(node)):
            raise GraphError(f"{node!r} cannot be put inside itself")
        node.parent = self
        # The children look up missing arguments/environment in their group (local lookups only).
        if isinstance(node.arguments, HierarchicalDict):
            node.arguments.parent = self.arguments
        if isinstance(node.environment, HierarchicalDict):
            node.environment.parent = self.environment

    def _has_ancestor(self, node):
        current = self
        while current is not None:
            if current is node:
                return True
            current = current.parent
        return False

    def addTask(self, task):
        if not isinstance(task, Task):
            raise GraphError(f"addTask() takes a Task, not {task!r}")
        if task in self.tasks:
            raise GraphError(f"{task!r} is already in {self!r}")
        self._adopt(task)
        self.tasks.append(task)
        return task

    def addTaskGroup(self, taskGroup):
        if not isinstance(taskGroup, TaskGroup):
            raise GraphError(f"addTaskGroup() takes a TaskGroup, not {taskGroup!r}")
        if taskGroup in self.taskGroups:
            raise GraphError(f"{taskGroup!r} is already in {self!r}")
        self._adopt(taskGroup)
        self.taskGroups.append(taskGroup)
        return taskGroup

    def addNewTask(self, *args, **kwargs):
        return self.addTask(Task(*args, **kwargs))

    def addNewTaskGroup(self, *args, **kwargs):
        return self.addTaskGroup(TaskGroup(*args, **kwargs))

    def addNewCallable(self, targetCall, name="", runner="puli.client.runner.CallableRunner", user_args=(),
                       user_kwargs=None, **kwargs):
        """A task running a Python function or method on the farm (see puli.client.runner)."""
        from .runner import callable_arguments
        task_name, arguments = callable_arguments(targetCall, name, user_args, user_kwargs or {})
        return self.addNewTask(task_name, arguments=arguments, runner=runner, **kwargs)

    def expand(self, hierarchy=True):
        """Run the expander once, then decompose/expand the children."""
        if not self.expanded:
            if self.expander is not None:
                self.expander(self)
            self.expanded = True
        if hierarchy:
            for task in self.tasks:
                task.decompose()
            for group in self.taskGroups:
                group.expand(hierarchy)
        return self

    @property
    def children(self):
        """Tasks then TaskGroups, in the order they are sent (Puli's order)."""
        return self.tasks + self.taskGroups

    def __repr__(self):
        return f"TaskGroup({self.name!r})"
