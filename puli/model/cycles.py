"""Deadlocks in a job graph: a node waits for its dependencies' targets (its ancestors' ones too)
and for its children; a cycle in that relation can never finish."""


def waiting_cycle(parent, dependencies, children):
    """The first cycle found, as a list of nodes ending where it starts, or None.

    `parent` maps each node to its parent (or None); `dependencies` and `children` map each node
    to the nodes it depends on and contains (every node is a key of all three).
    """
    inherited = {}
    for node in parent:                       # ancestors first, without recursion
        chain = []
        n = node
        while n is not None and n not in inherited:
            chain.append(n)
            n = parent[n]
        for n in reversed(chain):
            up = parent[n]
            inherited[n] = list(dependencies[n]) + (inherited[up] if up is not None else [])
    edges = {n: [t for t in inherited[n] if t != n] + list(children[n]) for n in parent}

    WHITE, GREY, BLACK = 0, 1, 2
    color = dict.fromkeys(parent, WHITE)
    for start in parent:
        if color[start] != WHITE:
            continue
        color[start] = GREY
        stack = [(start, iter(edges[start]))]
        path = [start]
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                color[node] = BLACK
                stack.pop()
                path.pop()
            elif color[nxt] == GREY:
                return path[path.index(nxt):] + [nxt]
            elif color[nxt] == WHITE:
                color[nxt] = GREY
                stack.append((nxt, iter(edges[nxt])))
                path.append(nxt)
    return None
