"""What the farm asks of workers, put in its outbox under the lock and delivered outside it."""


class Assign:
    """Run `command` on `render_node` under `assignment`, the fencing token of this run."""

    __slots__ = ("render_node", "command", "assignment")

    def __init__(self, render_node, command, assignment):
        self.render_node = render_node
        self.command = command
        self.assignment = assignment

    def body(self):
        """What a worker needs to run the command (the body of its POST /commands/). The PULI_*
        variables of the command's environment are the commandwatcher's to set, from these
        fields. Build it under the farm lock: it reads the live model."""
        cmd = self.command
        task = cmd.task
        return {
            "id": cmd.id,
            "assignment": self.assignment,
            "description": cmd.description,
            "runner": task.runner,
            "arguments": cmd.effective_arguments(),
            "environment": task.inherited("environment"),
            "user": task.user or task.job.user,
            "validationExpression": task.validation_expression,
            "taskName": task.name,
            "taskId": task.id,
            "jobId": task.job.id,
            "relativePathToLogDir": str(task.id),
            "runnerPackages": task.runner_packages,
            "watcherPackages": task.watcher_packages,
            "cores": cmd.cores,
            "ramUse": cmd.ram,
            "maxRunTime": task.max_run_time,
            "licenses": list(task.licenses),
            "attempt": cmd.attempt,
        }


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
