"""Adaptive chunks (OpenJD's TASK_CHUNKING with targetRuntimeSeconds): when a chunk of such a
task ends DONE, the frames of its chunks not yet dispatched are cut again into chunks sized from
the seconds per frame measured so far. A command that ever ran is never touched; frames only
move between never-dispatched READY commands, so every frame still runs exactly once.

The task's arguments hold `openjdChunks: {"parameter", "targetRuntimeSeconds", "contiguous"}`;
each command's, `openjdTask: {name: {"type", "value"}}` with the chunk's frames as "1-10" or
"1,3,5-7"."""
import json
import re

from .status import CommandStatus as CS

SLACK = 0.2                 # a new chunk size within 20 % of the current one changes nothing
_PART = re.compile(r"^\s*(-?\d+)\s*(?:-\s*(-?\d+))?\s*$")


def frames_of(chunk):
    """The frames of a chunk value ("1-10", "1,3,5-7"), in order."""
    out = []
    for part in str(chunk).split(","):
        m = _PART.match(part)
        if m is None:
            raise ValueError(f"{chunk!r} is not a chunk of frames")
        first = int(m.group(1))
        last = int(m.group(2)) if m.group(2) is not None else first
        out.extend(range(first, last + 1))
    return out


def count_frames(chunk):
    """How many frames a chunk value holds, without listing them."""
    total = 0
    for part in str(chunk).split(","):
        m = _PART.match(part)
        if m is None:
            raise ValueError(f"{chunk!r} is not a chunk of frames")
        first = int(m.group(1))
        total += (int(m.group(2)) if m.group(2) is not None else first) - first + 1
    return total


def chunk_text(frames):
    """Frames (ascending) as a chunk value: runs of consecutive frames as "a-b", joined by commas."""
    runs = []
    for frame in frames:
        if runs and frame == runs[-1][1] + 1:
            runs[-1][1] = frame
        else:
            runs.append([frame, frame])
    return ",".join(f"{a}-{b}" if a != b else f"{a}" for a, b in runs)


def cut(frames, size, contiguous):
    """Frames into chunks of at most `size`; contiguous chunks also break where a frame is missing."""
    chunks, current = [], []
    for frame in frames:
        if current and (len(current) == size or (contiguous and frame != current[-1] + 1)):
            chunks.append(current)
            current = []
        current.append(frame)
    if current:
        chunks.append(current)
    return chunks


def chunk_size(task, target):
    """The chunk size the runtimes measured on the task's finished chunks point to (>= 1)."""
    times = task.avg_times
    if not times or times[0] == 0:
        return None
    per_frame = times[1] / times[0]
    if per_frame <= 0:
        return None
    return max(1, int(target / per_frame))


def recut(farm, task, now):
    """Re-cut the never-dispatched READY chunks of an adaptive task. Returns the new chunk size,
    or None when nothing changed. Commands left without frames end DONE at once (nothing to run;
    a DB row is never deleted), new ones are added when the chunks got smaller."""
    spec = (task.arguments or {}).get("openjdChunks")
    if not isinstance(spec, dict):
        return None
    size = chunk_size(task, spec.get("targetRuntimeSeconds") or 0)
    current = task.chunk_size or spec.get("defaultTaskCount")
    # Each re-cut reads the task's commands: not for a measure that moved by a frame or two.
    if size is None or (current and abs(size - current) < max(1, current * SLACK)):
        return None
    task.chunk_size = size
    name = spec["parameter"]
    # Untouched: READY, never started (a retried command ran once, and keeps its frames).
    pending = [c for c in task.commands if c.status == CS.READY and c.attempt == 0 and c.start_time is None]
    groups = {}
    for cmd in pending:
        params = cmd.arguments.get("openjdTask") or {}
        if name not in params:
            return None
        others = json.dumps({k: v for k, v in params.items() if k != name}, sort_keys=True)
        groups.setdefault(others, []).append(cmd)
    changed = False
    for others, cmds in groups.items():
        sizes = [c.nb_frames for c in cmds]
        frames = sorted(f for c in cmds for f in frames_of(c.arguments["openjdTask"][name]["value"]))
        chunks = cut(frames, size, spec.get("contiguous", True))
        if [len(c) for c in chunks] == sizes:
            continue
        changed = True
        params = json.loads(others)
        for i, chunk in enumerate(chunks):
            value = {**params, name: {"type": "CHUNK[INT]", "value": chunk_text(chunk)}}
            args = json.dumps({"openjdTask": value}, separators=(",", ":"))
            label = ", ".join(f"{k}={v['value']}" for k, v in value.items())
            description = f"{task.name}[{label}]"
            if i < len(cmds):
                cmd = cmds[i]
                cmd.args_json, cmd.nb_frames, cmd.description = args, len(chunk), description
                farm.dirty.commands.add(cmd)
            else:
                farm.add_command(task, description, args, len(chunk), now)
        for cmd in cmds[len(chunks):]:
            cmd.args_json, cmd.nb_frames = json.dumps({"openjdTask": {**params, name: None}}), 0
            cmd.description = f"{task.name}[re-cut: no frames left]"
            farm.finish(cmd, CS.DONE, now, "re-cut: its frames went to other chunks")
    return size if changed else None
