"""Name patterns of the query filters: globs over the whole name, '*' any text and '?' one
character; without either, the exact name ('*sh010*' for a substring). An edit by name never
reaches more than was written. Matching takes time bounded by the name's length times the
pattern's (Puli's regular expressions did not: a crafted one of 40 characters took hours), and
runs outside the farm lock (filters.off_lock).
"""
import re

from ..errors import BadField

MAX_PATTERN = 256           # characters: more than any name needs
DOC = "globs over the whole name: '*' any text, '?' one character ('*sh010*': a substring)"

# Unmistakable regular-expression idioms: refused with the glob that says it, rather than
# silently matching nothing.
_REGEX_IDIOMS = (".*", ".+", "\\", "(?", "|")


def matcher(name, patterns):
    """One predicate over strings: true when any of `patterns` matches."""
    tests = [_one(name, p) for p in patterns]
    if len(tests) == 1:
        return tests[0]
    return lambda text: any(test(text) for test in tests)


def _one(name, pattern):
    if len(pattern) > MAX_PATTERN:
        raise BadField(name, f"'{name}' patterns are at most {MAX_PATTERN} characters, not {len(pattern)}")
    if any(idiom in pattern for idiom in _REGEX_IDIOMS) or pattern.startswith("^") or pattern.endswith("$"):
        hint = pattern.strip("^$").replace(".*", "*").replace(".+", "?*")
        raise BadField(name, f"'{name}' is a glob ('*' any text, '?' one character), not a regular "
                             f"expression: {pattern!r} is written {hint!r}")
    if "*" not in pattern and "?" not in pattern:
        return lambda text: text == pattern
    return _glob(pattern)


def _glob(pattern):
    """Every '*'-separated piece placed leftmost after the one before: the first anchored at the
    start, the last at the end. Leftmost placement is always a match when one exists."""
    pieces = pattern.split("*")
    compiled = [re.compile("".join("." if ch == "?" else re.escape(ch) for ch in piece), re.S)
                for piece in pieces]
    first, middle, last, last_len = compiled[0], compiled[1:-1], compiled[-1], len(pieces[-1])

    def test(text):
        if text is None:
            return False
        found = first.match(text)
        if found is None:
            return False
        if len(pieces) == 1:
            return found.end() == len(text)
        pos = found.end()
        for piece in middle:
            found = piece.search(text, pos)
            if found is None:
                return False
            pos = found.end()
        start = len(text) - last_len
        return start >= pos and last.fullmatch(text, start) is not None
    return test
