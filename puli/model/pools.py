"""Pools of render nodes, and the pool shares that put jobs in them."""

DEFAULT_POOL = "default"                # every render node is in it


class Pool:
    def __init__(self, id, name):
        self.id = id
        self.name = name
        self.render_nodes = {}          # name -> RenderNode, in insertion order
        self.shares = {}                # share id -> PoolShare
        self.jobs = {}                  # job -> None: jobs of this pool with dispatchable work
        self.free = {}                  # RenderNode -> None: dispatchable nodes with a free core
        self.archived = False


class PoolShare:
    """A job's place in a pool; its maxRN caps how many of the job's commands run at once.

    maxRN -1 means "no cap of its own": the job takes its fair share of the pool, in
    proportion to its dispatchKey. A positive maxRN is user-defined: it is served first.
    """

    def __init__(self, id, pool, node, max_rn=-1):
        self.id = id
        self.pool = pool
        self.node = node
        self.max_rn = max_rn
        self.archived = False

    @property
    def user_defined(self):
        return self.max_rn > 0

    @property
    def allocated(self):
        return self.node.active_count
