"""What operators do to render nodes: their pools, pause, reset, performance, quarantine, removal."""
from . import limits
from .pools import DEFAULT_POOL


def set_render_node_pools(farm, rn, names, create=True):
    """Put a render node in the pools named (and always in the default one), and out of the
    others; with create, pools not known yet are made."""
    pools = []
    for name in dict.fromkeys([DEFAULT_POOL, *names]):
        pool = farm.get_pool(name, create=create)
        if pool is not None:
            pools.append(pool)
    farm.place(rn, pools)


def set_render_node_paused(farm, rn, paused, kill=False, now=0.0):
    """Pause (nothing new starts there; with kill, what runs goes back to the queue) or resume,
    which also lifts a quarantine."""
    rn.paused = paused
    if not paused:
        rn.quarantined = False
        rn.history.clear()
    if kill:
        for cmd in list(rn.commands.values()):
            farm.requeue(cmd, now)
    farm.dirty.render_nodes.add(rn)
    farm.refresh_render_node(rn)


def reset_render_node(farm, rn, now):
    """Stop what the node runs and put those commands back in the queue."""
    requeued = list(rn.commands)
    for cmd in list(rn.commands.values()):
        farm.requeue(cmd, now)
    return requeued


def set_performance(farm, rn, value):
    rn.performance = limits.number("performance", value)
    farm.dirty.render_nodes.add(rn)
    farm.wake = True


def set_quarantine(farm, rn, quarantined):
    rn.quarantined = quarantined
    if not quarantined:
        rn.history.clear()
    farm.dirty.render_nodes.add(rn)
    farm.refresh_render_node(rn)


def remove_render_node(farm, rn, now):
    """Forget a render node (its row stays, archived); what it ran goes back to the queue."""
    for cmd in list(rn.commands.values()):
        farm.requeue(cmd, now)
    farm.place(rn, [])
    del farm.render_nodes[rn.name]
    farm.dirty.render_nodes.add(rn)
    rn.archived = True
