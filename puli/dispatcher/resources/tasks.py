"""/tasks/: Puli's task view of the tree (one tree here: a task id is its node id)."""
from ...model import job_operations
from ...model.errors import Conflict, NotFound
from ...model.status import FINAL_NODE
from .. import views
from .common import (command_page, command_statuses, field, int_list, job_node, page, param_ints,
                     read_body, sliced, str_dict)
from .nodes import set_timer


class Tasks:
    def __init__(self, service):
        self.service = service

    def on_get(self, req, resp):
        """Every TaskGroup and Task of the farm, by id, a page at a time."""
        offset, limit = page(req)
        with self.service.lock:
            farm = self.service.farm
            nodes = (n for n in farm.nodes.values() if n is not farm.root)
            items = [views.node(n) for n in sliced(nodes, offset, limit)]
            total = len(farm.nodes) - 1
        resp.media = {"tasks": items, "total": total, "offset": offset, "limit": limit}


class Task:
    def __init__(self, service):
        self.service = service

    def on_get(self, req, resp, id):
        with self.service.lock:
            node = job_node(self.service.farm, id)
            resp.media = {"tasks": [views.node(node, detail=True)]}


class Delete:
    def __init__(self, service):
        self.service = service

    def on_post(self, req, resp):
        """Archive finished jobs (DONE or CANCELED); refuse the whole request otherwise."""
        ids = list(dict.fromkeys(int_list(read_body(req), "taskids")))
        service = self.service
        with service.lock:
            farm = service.farm
            unknown = [i for i in ids if i not in farm.nodes]
            if unknown:
                raise NotFound(f"no node {', '.join(map(str, unknown))}; nothing was archived")
            refused = []
            for i in ids:
                node = farm.nodes[i]
                if not node.is_job:
                    refused.append(f"{i} (not a job)")
                elif node.status not in FINAL_NODE:
                    refused.append(f"{i} ({views.NODE_STATUS_NAMES[int(node.status)]})")
            if refused:
                raise Conflict(f"only finished jobs (DONE or CANCELED) can be archived, not "
                               f"{', '.join(refused)}; nothing was archived")
            for i in ids:
                farm.archive(farm.nodes[i])
        service.changed()
        resp.media = {"archived": ids, "count": len(ids)}


class Environment:
    def __init__(self, service):
        self.service = service

    def on_put(self, req, resp, id):
        """Replace the node's environment (its commands get it at their next start)."""
        env = str_dict(read_body(req), "environment")
        with self.service.lock:
            node = job_node(self.service.farm, id)
            job_operations.set_task_field(self.service.farm, node, "environment", env)
            resp.media = views.node(node)
        self.service.changed()

    on_post = on_put


class Arguments:
    def __init__(self, service):
        self.service = service

    def on_put(self, req, resp, id):
        """Replace the node's arguments."""
        self._apply(req, resp, id, merge=False)

    def on_post(self, req, resp, id):
        """Merge into the node's arguments."""
        self._apply(req, resp, id, merge=True)

    def _apply(self, req, resp, id, merge):
        arguments = field(read_body(req), "arguments", dict)
        with self.service.lock:
            node = job_node(self.service.farm, id)
            value = dict(node.arguments, **arguments) if merge else dict(arguments)
            job_operations.set_task_field(self.service.farm, node, "arguments", value)
            resp.media = views.node(node)
        self.service.changed()


class Commands:
    def __init__(self, service):
        self.service = service

    def on_get(self, req, resp, id):
        """The commands of the subtree, filtered by ?status= (repeatable), a page at a time."""
        statuses = command_statuses("status", param_ints(req, "status"))
        offset, limit = page(req)
        with self.service.lock:
            node = job_node(self.service.farm, id)
            cmds = (c for t in node.tasks() for c in t.commands)
            resp.media = dict(command_page(cmds, node.counts, statuses, offset, limit), rootTask=id)


class Tree:
    def __init__(self, service):
        self.service = service

    def on_get(self, req, resp, id):
        """Every node and command of the subtree."""
        with self.service.lock:
            node = job_node(self.service.farm, id)
            nodes = list(node.walk())
            resp.media = {
                "tasks": [views.node(n) for n in nodes],
                "commands": [views.command(c) for n in nodes if n.is_task for c in n.commands],
            }


class Setter:
    """PUT /tasks/<id>/<what> {key: value}; answers the node."""

    def __init__(self, service, key, kind, apply, **options):
        self.service = service
        self.key = key
        self.kind = kind
        self.apply = apply
        self.options = options

    def on_put(self, req, resp, id):
        value = field(read_body(req), self.key, self.kind, **self.options)
        with self.service.lock:
            node = job_node(self.service.farm, id)
            self.apply(self.service.farm, node, value)
            resp.media = views.node(node)
        self.service.changed()


def _set_comment(farm, node, value):
    job_operations.set_tag(farm, node, "comment", value)


def _set_ram(farm, node, value):
    job_operations.set_task_field(farm, node, "ram_use", value)


def routes(service):
    return [
        ("/tasks", Tasks(service)),
        ("/tasks/delete", Delete(service)),
        ("/tasks/{id:int}", Task(service)),
        ("/tasks/{id:int}/env", Environment(service)),
        ("/tasks/{id:int}/arguments", Arguments(service)),
        ("/tasks/{id:int}/commands", Commands(service)),
        ("/tasks/{id:int}/tree", Tree(service)),
        ("/tasks/{id:int}/comment", Setter(service, "comment", str, _set_comment)),
        ("/tasks/{id:int}/user",
         Setter(service, "user", str, lambda farm, node, v: job_operations.set_attribute(farm, node, "user", v))),
        ("/tasks/{id:int}/ram", Setter(service, "ramUse", int, _set_ram, minimum=0)),
        ("/tasks/{id:int}/timer", Setter(service, "timer", float, set_timer, nullable=True)),
    ]
