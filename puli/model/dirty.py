"""What changed in the farm since the last flush: the store writes it, then swaps it for a fresh one."""


class Dirty:
    """The objects that changed, by kind: each set is named like the store's rows of it."""

    __slots__ = ("commands", "nodes", "render_nodes", "pools", "shares", "licenses",
                 "archived_jobs", "removed_licenses", "meta")

    def __init__(self):
        self.commands = set()
        self.nodes = set()
        self.render_nodes = set()
        self.pools = set()
        self.shares = set()
        self.licenses = set()
        self.removed_licenses = set()
        self.archived_jobs = []
        self.meta = False

    def __bool__(self):
        return bool(self.commands or self.nodes or self.render_nodes or self.pools or self.shares
                    or self.licenses or self.removed_licenses or self.archived_jobs or self.meta)

    def merge(self, other):
        """Put back what a failed flush took, without losing what changed meanwhile."""
        for name in ("commands", "nodes", "render_nodes", "pools", "shares", "licenses", "removed_licenses"):
            getattr(self, name).update(getattr(other, name))
        self.archived_jobs[:0] = other.archived_jobs
        self.meta = self.meta or other.meta

    # -- one item at a time: the rows a database refused, kept aside and written alone --------
    def find(self, kind, key):
        """The item of `kind` (a set's name) whose key (id; name for licenses) is `key`, or
        None. A scan: it serves only when the database refused a row."""
        if kind == "meta":
            return self.meta or None
        return next((item for item in getattr(self, kind) if _key(kind, item) == key), None)

    def discard(self, kind, item):
        """Take `item` out; True when it was here."""
        if kind == "meta":
            found, self.meta = self.meta, False
            return found
        items = getattr(self, kind)
        if item not in items:
            return False
        items.remove(item)              # a set's, or the archived jobs' list's
        return True

    @classmethod
    def of(cls, kind, item):
        """A Dirty naming one item."""
        dirty = cls()
        if kind == "meta":
            dirty.meta = True
        elif kind == "archived_jobs":
            dirty.archived_jobs.append(item)
        else:
            getattr(dirty, kind).add(item)
        return dirty


def _key(kind, item):
    if kind == "removed_licenses":
        return item
    return item.name if kind == "licenses" else item.id
