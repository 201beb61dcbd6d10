"""What the CLIs share: the server and output options, job filters, statuses, dates, and one
error policy (a user error is one line on stderr and an exit status, never a traceback).

Exit statuses: 0 done, 1 the dispatcher refused (or nothing matched), 2 usage error,
3 the dispatcher (or a worker) cannot be reached, 130 interrupted.
"""
import argparse
import os
import re
import sys
import time
from urllib.parse import quote

from ..client.server import PuliError, Server, ServerUnreachable, server_url
from ..model.status import CommandStatus, NodeStatus, RenderNodeStatus
from ..sorting import orderable
from .render import Output

EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3


class UsageError(Exception):
    """The command line asks for something that cannot be: exit 2."""


class Unreachable(PuliError):
    """A process the command needs (a worker serving a log) cannot be reached: exit 3."""


class Failed(PuliError):
    """The command could not do what was asked (no job matched, ...): exit 1."""


# -- options ---------------------------------------------------------------------------------------
SERVER_HELP = ("the dispatcher: host, host:port or http://host:port "
               "(default: $PULI_SERVER, then the 'server' of ~/.config/puli/client.yml or "
               "/etc/puli/client.yml, then localhost:8004)")


TOKEN_HELP = ("the token the dispatcher knows you by (default: $PULI_TOKEN, then the 'token' of "
              "~/.config/puli/client.yml or /etc/puli/client.yml)")


def add_server_options(parser, **default):
    """--server and --token: where the dispatcher is, and who asks."""
    parser.add_argument("--server", metavar="URL", help=SERVER_HELP, **default)
    parser.add_argument("--token", metavar="TOKEN", help=TOKEN_HELP, **default)


def add_common_options(parser, suppress=False):
    """--server, --token, --json and --csv; with `suppress`, an option left out keeps the value
    the main parser gave it (so that they can be given before or after a subcommand)."""
    default = {"default": argparse.SUPPRESS} if suppress else {}
    add_server_options(parser, **default)
    fmt = parser.add_mutually_exclusive_group()
    fmt.add_argument("--json", dest="format", action="store_const", const="json",
                     help="print JSON (the dispatcher's items) for scripts", **default)
    fmt.add_argument("--csv", dest="format", action="store_const", const="csv",
                     help="print CSV: a header, then one row per item", **default)


def connect(args):
    return Server(server_url(getattr(args, "server", None), getattr(args, "port", None)),
                  token=getattr(args, "token", None))


def output(args):
    return Output(getattr(args, "format", None) or "table")


# -- values --------------------------------------------------------------------------------------
def parse_statuses(values, enum):
    """Status codes from names (any case, or a unique prefix) or numbers, repeated or
    comma-separated: ["error", "1,paused"] -> [4, 1, 6]."""
    names = {s.name: int(s) for s in enum}
    out = []
    for value in values or ():
        for part in str(value).split(","):
            part = part.strip()
            if not part:
                continue
            if part.isascii() and part.isdigit():
                if int(part) not in names.values():
                    raise UsageError(f"{part} is not a status: {_status_list(enum)}")
                out.append(int(part))
                continue
            matches = [code for name, code in names.items() if name.startswith(part.upper())]
            exact = names.get(part.upper())
            if exact is not None:
                matches = [exact]
            if len(matches) != 1:
                raise UsageError(f"{part!r} is not a status: {_status_list(enum)}")
            out.append(matches[0])
    return list(dict.fromkeys(out))


def _status_list(enum):
    return ", ".join(f"{s.name} ({int(s)})" for s in enum)


_RELATIVE = re.compile(r"^(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_UNITS = (7 * 86400, 86400, 3600, 60, 1)
_DATE_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M",
                 "%Y-%m-%d")


def parse_time(value, now=None):
    """Seconds since the epoch from a local date ("YYYY-mm-dd[ HH:MM[:SS]]") or a time ago
    ("90s", "30m", "2h", "3d", "1w", "1h30m")."""
    text = str(value).strip()
    match = _RELATIVE.match(text)
    if text and match:
        seconds = sum(int(n) * unit for n, unit in zip(match.groups(), _UNITS) if n)
        return (time.time() if now is None else now) - seconds
    for fmt in _DATE_FORMATS:
        try:
            return time.mktime(time.strptime(text, fmt))
        except ValueError:
            pass
    raise UsageError(f"{value!r} is not a date: use 'YYYY-mm-dd[ HH:MM[:SS]]' or a time ago "
                     "such as 30m, 2h, 3d")


def epoch_param(value):
    """A time as the API takes it (seconds since the epoch: no time zone to disagree on)."""
    return f"{parse_time(value):.0f}"


def comparison(value):
    """Puli's render node constraint: +N (more than), -N (less than) or N (equal)."""
    text = str(value).strip()
    if not re.fullmatch(r"[+-]?\d+(\.\d+)?", text):
        raise UsageError(f"{value!r}: use +N (more than), -N (less than) or N (exactly)")
    return text


# -- job filters -----------------------------------------------------------------------------------
def restrictions(words):
    """Puli's positional restrictions: all digits is a job id, anything else a user."""
    return [("constraint_id" if w.isdigit() else "constraint_user", w) for w in words]


def add_job_filters(parser):
    group = parser.add_argument_group("job filters (OR within one option, AND across options)")
    group.add_argument("--id", action="append", type=int, default=[], metavar="ID",
                       help="job id (repeatable)")
    group.add_argument("--user", action="append", default=[], help="owner (repeatable)")
    group.add_argument("--status", action="append", default=[], metavar="STATUS",
                       help="job status, name or number: " + _status_list(NodeStatus))
    group.add_argument("--name", action="append", default=[], metavar="PATTERN",
                       help="job name; '*' matches any text, '?' one character")
    group.add_argument("--prod", action="append", default=[], help="production (the prod tag)")
    group.add_argument("--pool", action="append", default=[], help="pool the job runs in")
    group.add_argument("--since", "--created-after", dest="since", metavar="WHEN",
                       help="submitted at or after WHEN: 'YYYY-mm-dd[ HH:MM[:SS]]' or 2h, 3d ago")
    group.add_argument("--started-after", metavar="WHEN", help="started at or after WHEN")
    group.add_argument("--ended-after", metavar="WHEN", help="ended at or after WHEN")


def job_constraints(args, words=()):
    """The /query constraint parameters of the filters in `args` and the restrictions `words`."""
    out = restrictions(words)
    out += [("constraint_id", str(i)) for i in args.id]
    out += [("constraint_user", u) for u in args.user]
    out += [("constraint_status", str(s)) for s in parse_statuses(args.status, NodeStatus)]
    out += [("constraint_name", n) for n in args.name]
    out += [("constraint_prod", p) for p in args.prod]
    out += [("constraint_pool", p) for p in args.pool]
    for key, value in (("constraint_creationtime", args.since),
                       ("constraint_starttime", args.started_after),
                       ("constraint_endtime", args.ended_after)):
        if value:
            out.append((key, epoch_param(value)))
    return out


def command_status_codes(values):
    return parse_statuses(values, CommandStatus)


def rn_status_codes(values):
    return parse_statuses(values, RenderNodeStatus)


def api_path(*parts):
    """A dispatcher route from its parts, each quoted (a render node's name keeps its ':')."""
    return "/" + "/".join(quote(str(p), safe=":") for p in parts)


# -- sorting ---------------------------------------------------------------------------------------
def sort_items(items, field, reverse=False, aliases=None):
    """Items sorted on `field` (an item key in any case, or an alias such as a column header)."""
    if not field or not items:
        return items
    keys = {k.lower(): k for item in items for k in item}
    name = (aliases or {}).get(field.lower(), field)
    key = keys.get(name.lower())
    if key is None:
        raise UsageError(f"cannot sort on {field!r}: use one of {', '.join(sorted(keys.values()))}")
    return sorted(items, key=lambda item: orderable(item.get(key)), reverse=reverse)


# -- running a command -------------------------------------------------------------------------------
def run(prog, func, args):
    """Call func(args) and turn every user-facing failure into one line and an exit status."""
    try:
        code = func(args) or 0
        sys.stdout.flush()          # a closed pipe shows here, not at interpreter exit
        return code
    except UsageError as exc:
        return _fail(prog, f"error: {exc}", EXIT_USAGE)
    except (ServerUnreachable, Unreachable) as exc:
        return _fail(prog, str(exc), EXIT_UNREACHABLE)
    except PuliError as exc:
        return _fail(prog, str(exc), EXIT_REFUSED)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (puliquery jobs | head): stop quietly, without a second error
        # when Python flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _fail(prog, message, code):
    sys.stdout.flush()
    print(f"{prog}: {message}", file=sys.stderr)
    return code
