"""Render nodes: the machines a worker runs on, their resources and their health."""
from collections import deque

from .status import RenderNodeStatus


class RenderNode:
    def __init__(self, id, name, host="", port=8000, cores=1, ram=0, speed=0.0,
                 caracteristics=None, puliversion="", create_date=None):
        self.id = id
        self.name = name                # "host:port", lower case
        self.host = host
        self.port = port
        self.cores = cores
        self.ram = ram                  # MB
        self.speed = speed              # GHz
        self.caracteristics = caracteristics or {}
        self.puliversion = puliversion
        self.create_date = create_date
        self.register_date = None
        self.performance = 0.0
        self.pools = []
        self.commands = {}              # command id -> Command holding resources here
        self.running = 0                # how many of them are RUNNING (the rest are ASSIGNED)
        self.free_cores = cores
        self.free_ram = ram
        self.system_free_ram = None     # MB, from the last heartbeat
        self.system_swap_percentage = 0.0
        self.last_alive = 0.0
        self.alive = False              # False = UNKNOWN: never heard of, or silent too long
        self.reachable = True           # False after refusing or missing an assignment, until heard from
        self.paused = False
        self.quarantined = False
        self.archived = False
        self.token_id = None            # the token that registered it: the only one it answers
        self.secret = None              # what its worker asks of us (given at registration, kept in memory)
        self.scheme = "http"            # how its worker's API is reached: http, or https
        self.idle_since = None          # when its last command ended, until its next assignment
        self.history = deque()          # (job id, failed) of the last final commands, one per job
        self.status = RenderNodeStatus.UNKNOWN

    def derive_status(self):
        if not self.alive:
            return RenderNodeStatus.UNKNOWN
        if self.paused:
            return RenderNodeStatus.PAUSED
        if not self.commands:
            return RenderNodeStatus.IDLE
        return RenderNodeStatus.WORKING if self.running else RenderNodeStatus.ASSIGNED

    @property
    def dispatchable(self):
        """May receive new commands (resources permitting)."""
        return self.alive and self.reachable and not self.paused and not self.quarantined

    @property
    def usable_ram(self):
        """RAM a new command may reserve: our bookkeeping, capped by what the host reports."""
        if self.system_free_ram is None:
            return self.free_ram
        return min(self.free_ram, self.system_free_ram)

    def matches(self, requirements):
        """Puli's requirement matching against this node's caracteristics.

        `softs`: every listed soft must be installed; `[a, b]`: a < value < b; int/float: value
        at least that; str/bool: equality; any other key: must exist. A type mismatch never
        matches.
        """
        c = self.caracteristics
        for key, wanted in requirements.items():
            if key == "softs":
                installed = c.get("softs") or ()
                if not all(soft in installed for soft in wanted):
                    return False
                continue
            if key not in c:
                return False
            have = c[key]
            if isinstance(wanted, list) and len(wanted) == 2:
                if not _same_kind(have, wanted[0]) or not wanted[0] < have < wanted[1]:
                    return False
            elif isinstance(wanted, bool) or isinstance(wanted, str):
                if have != wanted:
                    return False
            elif isinstance(wanted, (int, float)):
                if not _same_kind(have, wanted) or have < wanted:
                    return False
        return True


def _same_kind(a, b):
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return True
    return type(a) is type(b)
