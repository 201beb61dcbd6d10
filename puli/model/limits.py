"""What the database can hold, checked before the farm accepts a value.

The store's columns (puli/store/tables.py sizes them from these constants) have limits a
Python value does not: an INT holds 32 bits, a VARCHAR(255) 255 characters, TEXT 64 KiB, and
no column holds NaN or infinity. A value past them would be accepted in memory and then refused
by every write of it, so each entry point (graph parsing, edits, worker reports) refuses it
first, naming the field.
"""
import json
import math

from .errors import InvalidValue

INT_MIN, INT_MAX = -2**31, 2**31 - 1        # INT: priority, maxRN, cores, RAM, attempts, counts
BIGINT_MAX = 2**63 - 1                      # BIGINT: ids, assignments
NAME_CHARS = 255                            # VARCHAR(255): render node, host, pool, license names
# TEXT holds 65,535 bytes, 16,383 four-byte characters; names built from a text (a command's
# description is its task's name and frame range) need a few more.
TEXT_CHARS = 16_000
JSON_BYTES = 16 * 1024 * 1024 - 1           # MEDIUMTEXT: arguments, environment, tags, stats
# Nesting of a free-form JSON value: deeper ones break json.dumps, and the recursion limit it
# hits depends on the thread's stack, so a value accepted here could fail later, elsewhere.
JSON_DEPTH = 32


def integer(name, value, minimum=INT_MIN, maximum=INT_MAX, error=InvalidValue):
    """`value` if it is an int (not a bool) from `minimum` to `maximum`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise error(f"{name} must be an integer, not {show(value)}")
    if not minimum <= value <= maximum:
        raise error(f"{name} must be an integer from {minimum} to {maximum}, not {show(value)}")
    return value


def number(name, value, minimum=None, maximum=None, error=InvalidValue):
    """`value` as a float if it is a finite number (NaN and infinity fit no column)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise error(f"{name} must be a number, not {show(value)}")
    try:
        value = float(value)
    except OverflowError:
        raise error(f"{name} is too large a number") from None
    if not math.isfinite(value):
        raise error(f"{name} must be a finite number, not {value}")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise error(f"{name} must be a number from {minimum} to {maximum}, not {value:g}")
    return value


def text(name, value, max_chars=TEXT_CHARS, error=InvalidValue):
    """`value` if it is a string of at most `max_chars` characters."""
    if not isinstance(value, str):
        raise error(f"{name} must be a string, not {show(value)}")
    if len(value) > max_chars:
        raise error(f"{name} is {len(value)} characters long; at most {max_chars} are kept")
    return value


def json_text(name, value, error=InvalidValue):
    """`value` (arguments, environment, tags, stats...) as the compact JSON text the store keeps."""
    _check_depth(name, value, error)
    try:
        encoded = json.dumps(value, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise error(f"{name} cannot be stored: {exc}") from None
    check_json_size(name, encoded, error)
    return encoded


def _check_depth(name, value, error):
    stack = [(value, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            inner = value.values()
        elif isinstance(value, list):
            inner = value
        else:
            continue
        if depth > JSON_DEPTH:
            raise error(f"{name} is nested more than {JSON_DEPTH} levels deep")
        stack.extend((v, depth + 1) for v in inner)


def check_json_size(name, encoded, error=InvalidValue):
    # json.dumps escapes every non-ASCII character: its length is its size in bytes.
    if len(encoded) > JSON_BYTES:
        raise error(f"{name} is {len(encoded)} bytes as JSON; at most {JSON_BYTES} are kept")


def show(value):
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
