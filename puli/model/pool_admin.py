"""Pools and their render nodes, and license counters: what an admin creates and edits."""
from . import limits
from .errors import Conflict, InvalidValue, NotFound
from .lookup import get_render_node
from .pools import DEFAULT_POOL


def create_pool(farm, name):
    if not name or not name.replace("_", "").replace("-", "").replace(".", "").isalnum():
        raise InvalidValue(f"bad pool name {name!r}: use letters, digits, '.', '_' and '-'")
    limits.text("a pool's name", name, limits.NAME_CHARS)
    pool = farm.pools.get(name)
    if pool is not None and not pool.archived:
        raise Conflict(f"pool {name} already exists")
    if pool is not None:
        pool.archived = False
        farm.dirty.pools.add(pool)
        return pool
    return farm.get_pool(name)


def delete_pool(farm, pool):
    if pool.name == DEFAULT_POOL:
        raise Conflict("the default pool cannot be deleted")
    if pool.shares:
        raise Conflict(f"pool {pool.name} still holds jobs: {', '.join(str(s.node.id) for s in pool.shares.values())}")
    for rn in list(pool.render_nodes.values()):
        farm.place(rn, [p for p in rn.pools if p is not pool])
    pool.archived = True
    farm.dirty.pools.add(pool)


def set_pool_members(farm, pool, names):
    """Replace a pool's render nodes (Puli's PUT /pools/<name>/rendernodes)."""
    members = [get_render_node(farm, name) for name in names]
    for rn in list(pool.render_nodes.values()):
        if rn not in members:
            farm.place(rn, [p for p in rn.pools if p is not pool])
    for rn in members:
        if pool not in rn.pools:
            farm.place(rn, [*rn.pools, pool])


def set_license(farm, name, maximum):
    limits.text("a license's name", name, limits.NAME_CHARS)
    limits.integer("a license count", maximum, minimum=0)
    return farm.set_license(name, maximum)


def release_license(farm, name, rn_names):
    """A runner gives its tokens back early (Puli's DELETE /licenses/<name>)."""
    lic = farm.licenses.get(name)
    if lic is None:
        raise NotFound(f"no license {name}")
    farm.release_tokens(lic, {n.lower() for n in rn_names})
    return lic
