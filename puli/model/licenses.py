"""Licenses as counters: a command holding `a&b` holds one token of each, or none."""


class License:
    def __init__(self, name, maximum=0):
        self.name = name
        self.maximum = maximum
        self.used = 0
        self.holders = {}               # command id -> render node name

    @property
    def available(self):
        return self.used < self.maximum

    def as_wire(self):
        return {"name": self.name, "max": self.maximum, "used": self.used,
                "rns": sorted(set(self.holders.values()))}
