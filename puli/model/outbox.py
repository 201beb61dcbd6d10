"""What the farm asks of workers, put in its outbox under the lock and delivered outside it."""


class Assign:
    """Run `command` on `render_node` under `assignment`, the fencing token of this run."""

    __slots__ = ("render_node", "command", "assignment")

    def __init__(self, render_node, command, assignment):
        self.render_node = render_node
        self.command = command
        self.assignment = assignment


class Stop:
    """Stop the run `assignment` of command `command_id` on `render_node`."""

    __slots__ = ("render_node", "command_id", "assignment")

    def __init__(self, render_node, command_id, assignment):
        self.render_node = render_node
        self.command_id = command_id
        self.assignment = assignment

    def __eq__(self, other):
        return isinstance(other, Stop) and (self.render_node, self.command_id, self.assignment) == \
            (other.render_node, other.command_id, other.assignment)

    def __hash__(self):
        return hash((self.command_id, self.assignment))
