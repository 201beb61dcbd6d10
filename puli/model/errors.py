"""Domain errors; the dispatcher maps each to one HTTP status in one place."""


class FarmError(Exception):
    """Base of every refusal the farm makes; the message is for the user."""


class InvalidGraph(FarmError):
    """A submitted graph is malformed: nothing of it is created."""


class InvalidValue(FarmError):
    """An edit names a bad value."""


class NotFound(FarmError):
    """The job, node, command, render node, pool, share or license does not exist."""


class Forbidden(FarmError):
    """The caller may not do this to this object (a render node bound to another token)."""


class Conflict(FarmError):
    """The request contradicts the current state (e.g. a pool that already exists)."""


class StaleAssignment(FarmError):
    """A worker reported on an assignment that is no longer the command's current one.

    The worker must stop that command: it was cancelled, reassigned or timed out and retried.
    """


class TooLarge(InvalidGraph):
    """A submission is larger than one may be (max_graph_commands, max_graph_tasks)."""


class QueueFull(FarmError):
    """The farm, or the submitting user, holds as much unfinished work as it may."""
