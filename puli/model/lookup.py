"""Finding what a request names in the farm: a NotFound naming it otherwise."""
from .errors import NotFound


def get_node(farm, node_id):
    node = farm.nodes.get(node_id)
    if node is None:
        raise NotFound(f"no node {node_id}")
    return node


def get_command(farm, command_id):
    cmd = farm.commands.get(command_id)
    if cmd is None:
        raise NotFound(f"no command {command_id}")
    return cmd


def get_render_node(farm, name):
    rn = farm.render_nodes.get(name.lower())
    if rn is None:
        raise NotFound(f"no render node {name}")
    return rn


def get_pool(farm, name):
    pool = farm.pools.get(name)
    if pool is None or pool.archived:
        raise NotFound(f"no pool {name}")
    return pool
