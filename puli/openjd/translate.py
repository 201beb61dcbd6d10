"""An OpenJD submission into a Puli graph (POST /graphs/'s wire format): the job is a TaskGroup,
each step a Task (its dependencies the steps it depends on), each element of a step's parameter
space (a chunk, with TASK_CHUNKING) a Command. The template travels with the job: a node
resolves the step's format strings with openjd-model when it runs a command
(puli.commandwatcher.openjd)."""
from openjd.model import StepParameterSpaceIterator
from openjd.model.v2023_09 import TaskChunksRangeConstraint

from ..model.chunking import count_frames
from . import template as templates
from .errors import OpenJDError
from .hosts import host_requirements

RUNNER = "puli.commandwatcher.openjd.OpenJDRunner"
DESCRIPTION_CHARS = 1000
# Values one task parameter may hold, whatever the budget: openjd-model's iterator takes time in
# their number (about 2.4 s a million here).
MAX_VALUES = 10_000_000


def translate(body, max_commands):
    """A checked body (document.check_body) into a graph; OpenJDError names what is refused."""
    decoded = templates.decode(body["template"])
    values = templates.parameter_values(decoded, body["parameters"])
    job = templates.instantiate(decoded, values)
    wire_values = templates.values_to_wire(values)
    index = {step.name: i + 1 for i, step in enumerate(job.steps)}
    tasks = [{
        "type": "TaskGroup", "name": job.name, "tasks": list(index.values()), "priority": body["priority"],
        "arguments": {"openjd": {"template": body["template"], "parameters": wire_values}},
        "tags": {"openjdName": job.name,
                 "openjdParameters": {name: v["value"] for name, v in wire_values.items()}},
    }]
    left = max_commands
    for step in job.steps:
        commands, chunking = _commands(step, left)
        left -= len(commands)
        task = {
            "type": "Task", "name": step.name, "runner": RUNNER,
            "arguments": {"openjdStep": step.name, **({"openjdChunks": chunking} if chunking else {})},
            "commands": commands,
            "dependencies": [[index[d.dependsOn], [3]] for d in step.dependencies or ()],
            **host_requirements(step),
        }
        tasks.append(task)
    return {"name": job.name, "poolName": body["pool"], "root": 0, "tasks": tasks}


def _check_size(step, left):
    """Refuse a parameter space too large for the job before the library expands it (building
    its iterator costs time in the number of values): each parameter holds at most as many
    values as the job may still make commands (times the chunk size for a CHUNK[INT] one), and
    without a combination (a product of them all) the product is bounded too."""
    space = step.parameterSpace
    if space is None:
        return
    product = 1
    for name, definition in space.taskParameterDefinitions.items():
        size = len(definition.range)
        chunks = getattr(definition, "chunks", None)
        per_command = int(chunks.defaultTaskCount) if chunks is not None else 1
        if size > min(left * per_command, MAX_VALUES):
            raise OpenJDError(f"steps[{step.name}].parameterSpace.{name} holds {size} values: more commands than "
                              f"a job may have ({left} left of max_graph_commands; at most {MAX_VALUES} values)")
        product *= -(-size // per_command)
    if space.combination is None and product > left:
        raise OpenJDError(f"steps[{step.name}].parameterSpace makes {product} commands: more than a job may have "
                          f"({left} left of max_graph_commands)")


def _commands(step, left):
    _check_size(step, left)
    try:
        space = StepParameterSpaceIterator(space=step.parameterSpace)
    except (ValueError, TypeError) as exc:
        raise OpenJDError(f"steps[{step.name}].parameterSpace: {exc}") from None
    chunk_name = space.chunks_parameter_name
    chunking = None
    if chunk_name is not None:
        definition = step.parameterSpace.taskParameterDefinitions[chunk_name]
        chunks = definition.chunks
        if space.chunks_adaptive:
            chunking = {"parameter": chunk_name, "targetRuntimeSeconds": int(chunks.targetRuntimeSeconds),
                        "defaultTaskCount": int(chunks.defaultTaskCount),
                        "contiguous": chunks.rangeConstraint == TaskChunksRangeConstraint.CONTIGUOUS}
    commands = []
    for parameters in space:
        if len(commands) >= left:
            raise OpenJDError(f"steps[{step.name}] makes more commands than a job may have ({left} left "
                              "of max_graph_commands)")
        wire = {name: {"type": v.type.value, "value": str(v.value)} for name, v in parameters.items()}
        frames = count_frames(parameters[chunk_name].value) if chunk_name else 1
        label = ", ".join(f"{name}={v['value']}" for name, v in wire.items())
        description = f"{step.name}[{label}]" if label else step.name
        commands.append({"description": description[:DESCRIPTION_CHARS], "arguments": {"openjdTask": wire},
                         "nbFrames": frames})
    return commands, chunking

