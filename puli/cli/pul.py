"""The Puli-era commands (pul_query, pul_rn, pul_edit, pul_set_status, pul_set_pause and the
pul_cancel / pul_restart / pul_pause / pul_resume launchers) with their old options, translated
onto puliquery's functions (listings.py, actions.py) so that operators' habits and scripts keep
working.

Run one as ``python -m puli.cli.pul pul_query ...`` where the console scripts are not installed.
"""
import argparse
import sys

from ..model.status import CommandStatus, NodeStatus, RenderNodeStatus
from . import actions, listings
from .common import (SERVER_HELP, UsageError, comparison, connect, epoch_param,
                     parse_statuses, restrictions, run)
from .render import Output

# -C field=value: the fields each tool knows, and how a value becomes the API's.
_JOB_FIELDS = {
    "id": str, "user": str, "prod": str, "pool": str, "name": str,
    "status": lambda v: _statuses(v, NodeStatus),
    "creationtime": epoch_param, "starttime": epoch_param, "endtime": epoch_param,
}
_COMMAND_FIELDS = {
    "id": str, "command": str, "status": lambda v: _statuses(v, CommandStatus),
    "starttime": lambda v: v[0] + epoch_param(v[1:]) if v[:1] in ("<", ">") else ">" + epoch_param(v),
}
_RN_FIELDS = {
    "name": str, "host": str, "pool": str,
    "status": lambda v: _statuses(v, RenderNodeStatus),
    "speed": comparison, "ramsize": comparison, "coresnumber": comparison,
}


def _statuses(value, enum):
    return ",".join(str(s) for s in parse_statuses([value], enum))


def _constraints(args, fields):
    out = []
    for item in args.constraint:
        field, sep, value = item.partition("=")
        field = field.strip().lower()
        if not sep or field not in fields:
            raise UsageError(f"-C {item!r}: use FIELD=VALUE with FIELD one of {', '.join(fields)}")
        out.append((f"constraint_{field}", fields[field](value.strip())))
    return out


def _parser(prog, description, restricted=True):
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("-s", "--server", help=SERVER_HELP)
    parser.add_argument("-p", "--port", type=int, help="the dispatcher's port (replaces the one in --server)")
    parser.add_argument("-C", "--constraint", action="append", default=[], metavar="FIELD=VALUE",
                        help="filter (repeatable; in a name, '*' matches any text)")
    parser.add_argument("-v", "--verbose", action="store_true", help="accepted for compatibility")
    if restricted:
        parser.add_argument("restrictions", nargs="*", metavar="RESTRICTION",
                            help="job ids (numbers) or users (anything else)")
    return parser


def _output_options(parser):
    parser.add_argument("-c", "--csv", action="store_true", help="print CSV")
    parser.add_argument("-j", "--json", action="store_true", help="print JSON")
    parser.add_argument("-a", "--attribute", action="append", metavar="FIELD",
                        help="print this field (repeatable; CSV unless -j)")
    parser.add_argument("-r", "--reverse-order", dest="reverse", action="store_true")


def _format(args):
    if args.json:
        return "json"
    if args.csv or args.attribute:
        return "csv"
    return "table"


# -- pul_query, pul_rn --------------------------------------------------------------------------------
def _query(args):
    out = Output(_format(args))
    if args.data == "command":
        constraints = restrictions(args.restrictions) + _constraints(args, _COMMAND_FIELDS)
        listings.show_commands(connect(args), out, constraints, args.attribute,
                                args.sort, args.reverse)
    else:
        constraints = restrictions(args.restrictions) + _constraints(args, _JOB_FIELDS)
        listings.show_jobs(connect(args), out, constraints, args.attribute, args.tree,
                            args.sort, args.reverse, args.long)


def query(argv=None):
    parser = _parser("pul_query", "List jobs (or, with -d command, commands).")
    _output_options(parser)
    parser.add_argument("-t", "--tree", action="store_true", help="show the tasks under each job")
    parser.add_argument("-o", "--sort", metavar="FIELD", help="sort on FIELD (default: id)")
    parser.add_argument("-l", "--long", action="store_true", help="more columns")
    parser.add_argument("-d", "--data", choices=("job", "command"), default="job")
    return run("pul_query", _query, parser.parse_args(argv))


def _rn(args):
    constraints = _constraints(args, _RN_FIELDS)
    listings.show_rns(connect(args), Output(_format(args)), constraints, args.attribute,
                       args.sort, args.reverse)


def rn(argv=None):
    parser = _parser("pul_rn", "List render nodes.", restricted=False)
    _output_options(parser)
    parser.add_argument("-o", "--sort", metavar="FIELD", help="sort on FIELD (default: name)")
    return run("pul_rn", _rn, parser.parse_args(argv))


# -- the edits ---------------------------------------------------------------------------------------
def _edit(action, value_of=None):
    def handler(args):
        constraints = restrictions(args.restrictions) + _constraints(args, _JOB_FIELDS)
        fmt = "json" if getattr(args, "json", False) else "table"
        act = action(args) if callable(action) else action
        actions.edit_jobs(connect(args), Output(fmt), act, constraints,
                            value_of(args) if value_of else None)
    return handler


def _edit_parser(prog, description):
    parser = _parser(prog, description + " Needs at least one restriction or -C filter.")
    parser.add_argument("-j", "--json", action="store_true", help="print the edit summary as JSON")
    return parser


_EDIT_FIELDS = {"dispatchkey": "set-prio", "prio": "set-prio", "maxrn": "set-maxrn"}


def edit(argv=None):
    parser = _edit_parser("pul_edit", "Set the dispatchKey or maxRN of jobs.")
    parser.add_argument("--field", required=True, help="dispatchKey or maxRN")
    parser.add_argument("--value", required=True)
    args = parser.parse_args(argv)

    def action(args):
        name = _EDIT_FIELDS.get(args.field.lower())
        if name is None:
            raise UsageError(f"--field {args.field!r}: use dispatchKey or maxRN")
        return name
    return run("pul_edit", _edit(action, lambda a: a.value), args)


# pul_set_status --set N: the statuses the dispatcher can set have puliquery's names.
_SET_STATUS = {1: "restart", 3: "done", 5: "cancel"}


def set_status(argv=None):
    parser = _edit_parser("pul_set_status", "Set the status of jobs: 1 restart, 3 DONE, 5 cancel.")
    parser.add_argument("--set", required=True, type=int, dest="status", metavar="N")
    args = parser.parse_args(argv)
    return run("pul_set_status", _edit(lambda a: _SET_STATUS.get(a.status, "status"),
                                       lambda a: a.status), args)


def set_pause(argv=None):
    parser = _edit_parser("pul_set_pause", "Pause (--set 1) or resume (--set 0) jobs.")
    parser.add_argument("--set", required=True, type=int, choices=(0, 1), dest="paused")
    args = parser.parse_args(argv)
    return run("pul_set_pause", _edit(lambda a: "pause" if a.paused else "resume"), args)


def _launcher(prog, action, description):
    def main(argv=None):
        args = _edit_parser(prog, description).parse_args(argv)
        return run(prog, _edit(action), args)
    main.__name__ = prog
    return main


cancel = _launcher("pul_cancel", "cancel", "Cancel jobs (pul_set_status --set 5).")
restart = _launcher("pul_restart", "restart", "Restart jobs (pul_set_status --set 1).")
pause = _launcher("pul_pause", "pause", "Pause jobs (pul_set_pause --set 1).")
resume = _launcher("pul_resume", "resume", "Resume jobs (pul_set_pause --set 0).")

COMMANDS = {
    "pul_query": query, "pul_rn": rn, "pul_edit": edit, "pul_set_status": set_status,
    "pul_set_pause": set_pause, "pul_cancel": cancel, "pul_restart": restart,
    "pul_pause": pause, "pul_resume": resume,
}


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: python -m puli.cli.pul {{{','.join(COMMANDS)}}} [options]", file=sys.stderr)
        return 2
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
