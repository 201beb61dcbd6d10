"""Small hand-built farms for model and scheduler tests."""
from puli.model import worker_protocol
from puli.model.outbox import Assign
from puli.model.build import build_job
from puli.model.farm import Farm
from puli.model.graph import parse_graph
from puli.scheduler.dispatch import dispatch


def make_farm(**kw):
    return Farm(**kw)


def add_rn(farm, name, cores=4, ram=16000, pools=(), now=0.0, **caracteristics):
    worker_protocol.register(farm, name, {"cores": cores, "ram": ram, "speed": 3.0,
                                  "caracteristics": caracteristics, "pools": list(pools)}, [], now)
    return farm.render_nodes[name.lower()]


def task(name, frames=None, **kw):
    out = {"type": "Task", "name": name, "arguments": kw.pop("arguments", {})}
    if frames:
        first, last = frames
        out["arguments"].update(start=first, end=last, cmd="echo %%MI_FRAME%%")
    out.update(kw)
    return out


def submit(farm, *tasks, now=0.0, group=False, **graph):
    """Submit tasks (dicts from task()) as one job; with group, under a TaskGroup root."""
    tasks = list(tasks)
    if group or len(tasks) > 1:
        root = {"type": "TaskGroup", "name": graph.pop("name", "job"), "tasks": list(range(1, len(tasks) + 1))}
        body = {"root": 0, "tasks": [root, *tasks]}
    else:
        body = {"root": 0, "tasks": tasks}
    body.update(graph)
    job = build_job(farm, parse_graph(body), now)
    farm.publish(job, now)
    return job


def run_pass(farm, now=0.0):
    dispatch(farm, now)
    return [(m.render_node.name, m.command) for m in farm.take_outbox() if isinstance(m, Assign)]


def report(farm, cmd, status, now=0.0, **extra):
    return worker_protocol.command_update(farm, cmd.render_node.name, cmd.id,
                                  {"assignment": cmd.assignment, "status": int(status), **extra}, now)
