"""What simulated commands do: how long they run and whether they fail.

A command's duration comes from its arguments when the job says (`duration` in seconds, or a
`cmd` such as "sleep 5"), else from the simulator's distribution: "fixed:S", "uniform:A-B",
"exp:MEAN" (seconds). A fraction of commands fail (ERROR), drawn per run.
"""
import random
import re

SLEEP = re.compile(r"^\s*sleep\s+(\d+(?:\.\d+)?)\s*$")


def parse_distribution(text):
    """"fixed:2", "uniform:1-3", "exp:2" -> a function of a random.Random giving seconds."""
    kind, _, value = text.partition(":")
    try:
        if kind == "fixed":
            seconds = float(value)
            if seconds >= 0:
                return lambda rng: seconds
        elif kind == "uniform":
            low, _, high = value.partition("-")
            low, high = float(low), float(high)
            if 0 <= low <= high:
                return lambda rng: rng.uniform(low, high)
        elif kind == "exp":
            mean = float(value)
            if mean > 0:
                return lambda rng: rng.expovariate(1.0 / mean)
    except ValueError:
        pass
    raise ValueError(f"not a duration distribution: {text!r} (fixed:S, uniform:A-B or exp:MEAN, in seconds)")


class Behaviour:
    def __init__(self, distribution="fixed:1", fail_fraction=0.0, seed=None):
        self.rng = random.Random(seed)
        self.draw = parse_distribution(distribution)
        self.fail_fraction = fail_fraction

    def duration(self, body):
        arguments = body.get("arguments") or {}
        value = arguments.get("duration")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
            return float(value)
        match = SLEEP.match(str(arguments.get("cmd") or ""))
        if match:
            return float(match.group(1))
        return self.draw(self.rng)

    def fails(self, run):
        return self.fail_fraction > 0 and self.rng.random() < self.fail_fraction
