"""Statuses of commands, tree nodes and render nodes, with Puli's numeric codes on the wire."""
from enum import IntEnum


class CommandStatus(IntEnum):
    BLOCKED = 0
    READY = 1
    ASSIGNED = 2
    RUNNING = 3
    FINISHING = 4
    DONE = 5
    TIMEOUT = 6
    ERROR = 7
    CANCELED = 8


class NodeStatus(IntEnum):
    BLOCKED = 0
    READY = 1
    RUNNING = 2
    DONE = 3
    ERROR = 4
    CANCELED = 5
    PAUSED = 6


class RenderNodeStatus(IntEnum):
    UNKNOWN = 0
    BOOTING = 1
    PAUSED = 2
    IDLE = 3
    ASSIGNED = 4
    WORKING = 5
    FINISHING = 6


# Plain ints: these sets sit on the hottest paths, where IntEnum hashing costs more.
ACTIVE = frozenset({CommandStatus.ASSIGNED, CommandStatus.RUNNING, CommandStatus.FINISHING})
FINAL = frozenset({CommandStatus.DONE, CommandStatus.TIMEOUT, CommandStatus.ERROR, CommandStatus.CANCELED})
FAILED = frozenset({CommandStatus.TIMEOUT, CommandStatus.ERROR})
FINAL_NODE = frozenset({NodeStatus.DONE, NodeStatus.CANCELED})

N_COMMAND_STATUSES = len(CommandStatus)


def node_status(counts, paused):
    """Derive a tree node's status from the command counts of its subtree.

    One precedence for every node (Puli 1.7 had two): a paused unfinished node is PAUSED;
    errors show before activity; CANCELED only once nothing is left to run (one cancelled
    frame among DONE ones no longer hides the rest).
    """
    B, R, A, RU, F, D, T, E, C = counts
    pending = B + R + A + RU + F
    if paused and (pending or E or T):
        return NodeStatus.PAUSED
    if E or T:
        return NodeStatus.ERROR
    if A or RU or F:
        return NodeStatus.RUNNING
    if R:
        return NodeStatus.READY
    if B:
        return NodeStatus.BLOCKED
    if C:
        return NodeStatus.CANCELED
    return NodeStatus.DONE
