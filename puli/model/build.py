"""Turn a validated GraphSpec into model objects with fresh ids, ready for Farm.publish()."""
from .errors import InvalidGraph
from .jobs import new_command, new_dependency
from .jobs import Task, TaskGroup


def build_job(farm, spec, now):
    """Create the job's nodes, commands, dependencies and pool share (not yet in the farm)."""
    missing = sorted(t for t in spec.external_targets() if t not in farm.nodes or t == farm.root.id)
    if missing:
        raise InvalidGraph(f"dependencies name nodes that do not exist: {', '.join(map(str, missing))}")
    first_node, first_command = farm.allocate_ids(len(spec.nodes), spec.command_count)
    ids = {}
    # Parents get smaller ids than their children: walk from the root.
    order = []
    stack = [spec.root]
    while stack:
        index = stack.pop()
        order.append(index)
        stack.extend(reversed(spec.nodes[index].children))
    for offset, index in enumerate(order):
        ids[index] = first_node + offset

    built = {}
    next_command = first_command
    paused = str(spec.nodes[spec.root].fields["tags"].get("paused", "")).lower() == "true"
    for index in order:
        ns = spec.nodes[index]
        parent = built[ns.parent] if ns.parent is not None else farm.root
        cls = Task if ns.kind == "Task" else TaskGroup
        node = cls(ids[index], parent=parent, creation_time=now, **ns.fields)
        node.paused = paused
        if parent is not farm.root:
            parent.children.append(node)
        built[index] = node
        if cls is Task:
            for description, args_json, nb_frames in ns.commands:
                new_command(next_command, node, description, args_json, nb_frames)
                next_command += 1
    for index in order:
        node = built[index]
        for target, statuses in spec.nodes[index].dependencies:
            target_id = target[1] if isinstance(target, tuple) else ids[target]
            if target_id != node.id:
                new_dependency(node, target_id, statuses)

    job = built[spec.root]
    if spec.user and not job.user:
        job.user = spec.user
    max_rn = spec.max_rn if spec.max_rn > 0 else job.max_rn
    job.max_rn = -1
    job.share = farm.new_share(farm.get_pool(spec.pool), job, max_rn if max_rn > 0 else -1, register=False)
    return job
