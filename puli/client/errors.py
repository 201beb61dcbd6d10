"""The job-script API's errors. Each is a PuliError: str() is one line for the user."""
from .server import PuliError, ServerUnreachable


class Error(PuliError):
    """Raised on any invalid action of the job-script API."""


class GraphError(Error):
    """The graph is built wrongly (bad node, bad edge, a node added twice...)."""


class GraphConnectionError(GraphError):
    """An edge (addEdges, addChain) is malformed. Puli 1.7 called it ConnectionError."""


class DependencyCycleError(GraphError):
    """The dependencies form a cycle; `cycle` lists the nodes on it (the first one repeated last)."""

    def __init__(self, message, cycle=()):
        super().__init__(message)
        self.cycle = list(cycle)


class TaskAlreadyDecomposedError(Error):
    """Kept for Puli 1.7 scripts that catch it; decompose() twice is harmless here."""


class GraphSubmissionError(Error):
    """The dispatcher refused the graph (`status`, `title`, `description` from its answer) or could
    not be reached (`status` None). str() is the server's message."""

    def __init__(self, message, status=None, title="", description=""):
        super().__init__(message)
        self.status = status
        self.title = title
        self.description = description


class SubmissionUnreachable(GraphSubmissionError, ServerUnreachable):
    """The submission could not reach the dispatcher (a GraphSubmissionError and a ServerUnreachable)."""

    def __init__(self, url, reason):
        ServerUnreachable.__init__(self, url, reason)
        self.status = None
        self.title = ""
        self.description = str(self)


class GraphExecError(Error):
    """The graph cannot be run locally (Graph.execute)."""


class GraphExecInterrupt(Exception):
    """Kept for Puli 1.7 scripts; execute() returns CANCELED when interrupted."""
