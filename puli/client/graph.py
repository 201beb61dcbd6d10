"""The job-script API's Graph: a job's tree (puli.client.nodes), its wire format and its submission.

A job script builds a tree of TaskGroups and Tasks, links nodes with dependencies, and submits it::

    from puli.client import Graph, Task, DONE

    graph = Graph("shot010", user="ann", poolName="default")
    render = graph.addNewTask("render", arguments={"cmd": "render -f %%MI_FRAME%%", "start": 1,
                                                   "end": 100, "packetSize": 10})
    comp = graph.addNewTask("comp", arguments={"cmd": "comp shot010"})
    comp.dependsOn(render, [DONE])
    location, body = graph.submit()

Differences with Puli 1.7, on purpose:

* a dependency on a TaskGroup is sent as such and evaluated by the dispatcher (no copy onto the
  group's tasks); a dependency may name a node of another job by its id (``task.dependsOn(42)``);
* a task keeps its own timer inside a group; the graph's ``maxRN`` applies;
* a dependency cycle (waiting on one's own ancestor included) raises `DependencyCycleError` before
  anything is sent; a server refusal raises `GraphSubmissionError` with the server's message;
* ``Task(maxRunTime=seconds)`` kills a command running longer than that.
"""
import getpass
import json

from ..model.cycles import waiting_cycle
from .errors import (DependencyCycleError, GraphConnectionError, GraphError, GraphSubmissionError,
                     SubmissionUnreachable)
from .nodes import DONE, RUNNER_NAMES, Task, TaskGroup, _is_node
from .server import PuliError, RequestError, Server, ServerUnreachable, server_url


class Graph:
    """A job: a root node (a TaskGroup named like the graph, unless a Task or TaskGroup is given),
    its owner, pool and maxRN."""

    def __init__(self, name, root=None, user=None, poolName='default', maxRN=-1, tags=None):
        self.name = str(name)
        if root is None:
            self.root = TaskGroup(self.name, tags=tags)
        elif _is_node(root):
            self.root = root
            if tags:
                root.updateTags(tags)
        else:
            raise GraphError(f"the root must be a Task or a TaskGroup, not {root!r}")
        self.user = user if user else getpass.getuser()
        self.poolName = poolName
        self.maxRN = maxRN
        self.meta = {}
        self.id = None              # the job's node id, once submitted
        self.location = None

    # -- building -------------------------------------------------------------------------------

    def _group(self):
        if not isinstance(self.root, TaskGroup):
            raise GraphError("the graph's root is a Task: nodes can only be added to a TaskGroup")
        return self.root

    def add(self, pElem):
        if isinstance(pElem, Task):
            return self._group().addTask(pElem)
        if isinstance(pElem, TaskGroup):
            return self._group().addTaskGroup(pElem)
        raise GraphError(f"only Tasks and TaskGroups can be added, not {pElem!r}")

    def addList(self, pElemList):
        if not isinstance(pElemList, (list, tuple)):
            raise GraphError(f"addList() takes a list of nodes, not {pElemList!r}")
        for node in pElemList:
            self.add(node)
        return list(pElemList)

    def addNewTask(self, *args, **kwargs):
        return self._group().addNewTask(*args, **kwargs)

    def addNewTaskGroup(self, *args, **kwargs):
        return self._group().addNewTaskGroup(*args, **kwargs)

    def addNewCallable(self, targetCall, name="", runner="puli.client.runner.CallableRunner", user_args=(),
                       user_kwargs=None, **kwargs):
        return self._group().addNewCallable(targetCall, name, runner, user_args, user_kwargs, **kwargs)

    def addEdges(self, pEdgeList):
        """Edges (source, destination[, statuses]): the destination waits for the source."""
        for i, edge in enumerate(pEdgeList):
            if not isinstance(edge, (list, tuple)) or len(edge) not in (2, 3):
                raise GraphConnectionError(f"edge[{i}] = {edge!r}: expected (source, destination[, statuses])")
            statuses = edge[2] if len(edge) == 3 else [DONE]
            if not isinstance(statuses, (list, tuple)):
                raise GraphConnectionError(f"edge[{i}] = {edge!r}: the statuses must be a list")
            if not _is_node(edge[1]):
                raise GraphConnectionError(f"edge[{i}]: the destination {edge[1]!r} is not a Task or TaskGroup")
            edge[1].dependsOn(edge[0], list(statuses))
        return True

    def addChain(self, pEdgeChain, pEndStatusList=None):
        """Each node of the list waits for the one before it."""
        statuses = [DONE] if pEndStatusList is None else pEndStatusList
        if not isinstance(statuses, (list, tuple)):
            raise GraphConnectionError("addChain(): the statuses must be a list, such as [DONE]")
        if not isinstance(pEdgeChain, (list, tuple)):
            raise GraphConnectionError("addChain(): the chain must be a list of Tasks or TaskGroups")
        for source, destination in zip(pEdgeChain[:-1], pEdgeChain[1:]):
            if not _is_node(destination):
                raise GraphConnectionError(f"addChain(): {destination!r} is not a Task or TaskGroup")
            destination.dependsOn(source, list(statuses))
        return True

    # -- representation -------------------------------------------------------------------------

    def nodes(self):
        """Every node of the tree, in the order of the wire format's `tasks` array."""
        out = []
        stack = [self.root]
        seen = set()
        while stack:
            node = stack.pop(0)
            if id(node) in seen:
                raise GraphError(f"{node!r} appears twice in the graph")
            seen.add(id(node))
            out.append(node)
            if isinstance(node, TaskGroup):
                stack[0:0] = node.children
        return out

    def prepareGraphRepresentation(self):
        """Expand and decompose the tree, check it (no cycle) and return the wire format of
        `POST /graphs/` as a dict."""
        if isinstance(self.root, TaskGroup):
            self.root.expand(True)
        else:
            self.root.decompose()
        nodes = self.nodes()
        index = {id(node): i for i, node in enumerate(nodes)}
        tasks = [self._node_repr(node, index) for node in nodes]
        repr_ = {
            "name": self.name,
            "meta": dict(self.meta),
            "root": 0,
            "user": self.user,
            "poolName": self.poolName,
            "maxRN": self.maxRN,
            "tasks": tasks,
        }
        check_cycles(repr_)
        return repr_

    _toRepresentation = prepareGraphRepresentation
    toRepresentation = prepareGraphRepresentation

    def _dependencies(self, node, index):
        out = []
        for target, statuses in node.dependencies.items():
            if isinstance(target, int):
                out.append([{"nodeId": target}, list(statuses)])
            elif id(target) in index:
                out.append([index[id(target)], list(statuses)])
            else:
                raise GraphError(f"{node!r} depends on {target!r}, which is not in the graph "
                                 f"(add it, or name an existing node by its id)")
        return out

    def _node_repr(self, node, index):
        common = {
            "name": node.name,
            "arguments": dict(node.arguments),
            "environment": dict(node.environment),
            "requirements": dict(node.requirements),
            "dependencies": self._dependencies(node, index),
            "maxRN": node.maxRN,
            "priority": node.priority,
            "dispatchKey": node.dispatchKey,
            "tags": dict(node.tags),
            "timer": node.timer,
        }
        if isinstance(node, TaskGroup):
            return {"type": "TaskGroup", **common, "strategy": node.strategy,
                    "tasks": [index[id(child)] for child in node.children]}
        return {
            "type": "Task", **common,
            "runner": RUNNER_NAMES.get(node.runner, node.runner),
            "validationExpression": node.validator,
            "minNbCores": node.minNbCores,
            "maxNbCores": node.maxNbCores,
            "ramUse": node.ramUse,
            "lic": node.lic,
            "licence": node.lic,
            "maxAttempt": node.maxAttempt,
            "maxRunTime": node.maxRunTime,
            "runnerPackages": node.runnerPackages or "",
            "watcherPackages": node.watcherPackages or "",
            "commands": [{"description": c.description, "type": "command", "task": node.name,
                          "arguments": dict(c.arguments)} for c in node.commands],
        }

    def __repr__(self):
        return f"Graph({self.name!r})"

    def toJson(self, indent=None):
        return json.dumps(self.prepareGraphRepresentation(), indent=indent)

    # -- submission -----------------------------------------------------------------------------

    def save(self, path):
        """Write the wire format to `path` (JSON); Graph.loadAndSubmit() sends it later."""
        data = self.prepareGraphRepresentation()
        with open(path, "w") as f:
            json.dump(data, f, indent=1)
            f.write("\n")
        return path

    def submit(self, host=None, port=None, timeout=60.0, token=None):
        """Send the graph to the dispatcher and return (location URL, body): the body holds the new
        job's `id`, `name`, `nodes` and `commands` count. `host` may be a host name, host:port or
        a URL; by default the dispatcher is found from PULI_SERVER, the client config, or
        localhost:8004; the token likewise from PULI_TOKEN or the client config. Raises
        GraphSubmissionError (SubmissionUnreachable when the dispatcher cannot be reached),
        DependencyCycleError or GraphError."""
        data = self.prepareGraphRepresentation()
        location, body = _post_graph(data, host, port, timeout, token)
        self.id = body.get("id") if isinstance(body, dict) else None
        self.location = location
        return location, body

    @staticmethod
    def loadAndSubmit(path, host=None, port=None, timeout=60.0, token=None):
        """Submit a graph written by save() (or any file in the wire format)."""
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, ValueError) as exc:
            raise GraphError(f"cannot read a graph from {path}: {exc}") from None
        if isinstance(data, dict) and isinstance(data.get("tasks"), list) \
                and all(isinstance(t, dict) for t in data["tasks"]):
            check_cycles(data)
        return _post_graph(data, host, port, timeout, token)

    # -- local execution ------------------------------------------------------------------------

    def execute(self, detached=False, logDir=None, verbose=True, stream=None):
        """Run the graph here, on a farm of one local render node: see puli.client.local.
        Returns the final node status of the job (DONE, ERROR, CANCELED, or BLOCKED when some
        commands could never run). `detached` runs it in a thread and returns the thread; the
        graph is checked before (GraphExecError when it cannot run here)."""
        from .local import LocalRun
        run = LocalRun(self.prepareGraphRepresentation(), log_dir=logDir, verbose=verbose, stream=stream)
        if detached:
            import threading
            thread = threading.Thread(target=run.run, daemon=False)
            thread.start()
            return thread
        return run.run()


def _post_graph(data, host, port, timeout, token=None):
    try:
        server = Server(server_url(host, port), timeout=timeout, token=token)
    except PuliError as exc:
        raise GraphSubmissionError(str(exc)) from None
    try:
        response = server.request("POST", "/graphs/", data)
    except ServerUnreachable as exc:
        raise SubmissionUnreachable(exc.url, exc.reason) from None
    except RequestError as exc:
        raise GraphSubmissionError(f"the dispatcher refused the graph: {exc}", exc.status, exc.title,
                                   exc.description) from None
    except PuliError as exc:            # no token: one line saying how to pass one
        raise GraphSubmissionError(str(exc)) from None
    finally:
        server.close()
    try:
        body = response.json()
    except ValueError:
        body = {}
    location = response.headers.get("Location") or (f"/nodes/{body['id']}" if "id" in body else "")
    if location.startswith("/"):
        location = server.url + location
    return location, body


def check_cycles(data):
    """Refuse a wire-format graph whose dependencies form a cycle, as the dispatcher would.

    A node waits for its dependencies' targets (its ancestors' ones too) and for its children: a
    cycle in that relation can never finish (a node waiting on its own ancestor is one)."""
    tasks = data["tasks"]
    indices = range(len(tasks))

    def listed(value):
        return value if isinstance(value, list) else []

    parent = dict.fromkeys(indices)
    children = {i: [c for c in listed(tasks[i].get("tasks")) if isinstance(c, int) and 0 <= c < len(tasks)]
                for i in indices}
    for i in indices:
        for child in children[i]:
            parent[child] = i
    dependencies = {i: [d[0] for d in listed(tasks[i].get("dependencies"))
                        if isinstance(d, (list, tuple)) and d and isinstance(d[0], int) and 0 <= d[0] < len(tasks)]
                    for i in indices}
    cycle = waiting_cycle(parent, dependencies, children)
    if cycle:
        names = [str(tasks[i].get("name", i)) for i in cycle]
        raise DependencyCycleError("dependency cycle (each waits for the next): " + " -> ".join(names), names)
