"""puliquery: look at the farm and act on it — jobs, commands, render nodes, pools, licenses, logs.

This module is the command line (subcommands and their options); what each subcommand does is
in listings.py (what it shows), actions.py (what it changes) and logs.py.
"""
import argparse
import sys

from .actions import (cmd_license, cmd_pool_create, cmd_pool_delete, cmd_pool_set_nodes,
                      cmd_quarantine, cmd_rn_pause, cmd_rn_resume, cmd_unquarantine, job_action)
from .common import add_common_options, add_job_filters, run
from .listings import (cmd_audit, cmd_commands, cmd_job, cmd_jobs, cmd_licenses, cmd_pools,
                       cmd_poolshares, cmd_rn)
from .logs import cmd_log

PROG = "puliquery"


# -- the command line --------------------------------------------------------------------------------
def _subparser(subs, name, func, help, **kw):
    parser = subs.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".", **kw)
    add_common_options(parser, suppress=True)
    parser.set_defaults(func=func)
    return parser


def _listing_options(parser, sorted_by="id"):
    parser.add_argument("-a", "--attribute", action="append", metavar="FIELD",
                        help="show this field of the API instead of the default columns (repeatable)")
    parser.add_argument("--sort", metavar="FIELD", help=f"sort on a field or column (default: {sorted_by})")
    parser.add_argument("-r", "--reverse", action="store_true", help="reverse the order")


def _job_targets(parser):
    parser.add_argument("restrictions", nargs="*", metavar="JOB",
                        help="job ids (a word that is not a number is a user, as in Puli)")
    add_job_filters(parser)


def build_parser():
    parser = argparse.ArgumentParser(
        prog=PROG, description="Look at the Puli farm and act on it. Without a subcommand: jobs.",
        epilog="Exit status: 0 done, 1 refused by the dispatcher or nothing matched, 2 usage "
               "error, 3 dispatcher (or worker) unreachable.")
    add_common_options(parser)
    subs = parser.add_subparsers(title="subcommands", metavar="SUBCOMMAND")

    p = _subparser(subs, "jobs", cmd_jobs, "list jobs (the default)")
    _job_targets(p)
    _listing_options(p)
    p.add_argument("-t", "--tree", action="store_true", help="show the task groups and tasks under each job")
    p.add_argument("-l", "--long", action="store_true", help="more columns: pool, command counts, attempts")

    p = _subparser(subs, "job", cmd_job, "show one job: its tasks and its commands")
    p.add_argument("job", type=int, metavar="ID")

    p = _subparser(subs, "commands", cmd_commands, "list commands")
    p.add_argument("jobs", nargs="*", type=int, metavar="JOB", help="commands of these jobs (or any node)")
    p.add_argument("--job", action="append", type=int, default=[], metavar="ID", help="same as JOB")
    p.add_argument("--id", action="append", type=int, default=[], metavar="ID", help="command id")
    p.add_argument("--status", action="append", default=[],
                   help="command status, name or number (repeatable)")
    p.add_argument("--started-after", metavar="WHEN", help="'YYYY-mm-dd[ HH:MM[:SS]]' or 2h, 3d ago")
    p.add_argument("--started-before", metavar="WHEN")
    p.add_argument("--limit", type=int, metavar="N", help="at most N commands")
    _listing_options(p)

    p = _subparser(subs, "rn", cmd_rn, "list render nodes")
    p.add_argument("names", nargs="*", metavar="NAME", help="name (host:port); '*' matches any text, '?' one character")
    p.add_argument("--name", action="append", default=[], metavar="PATTERN", help="same as NAME")
    p.add_argument("--status", action="append", default=[], help="render node status, name or number")
    p.add_argument("--pool", action="append", default=[])
    p.add_argument("--cores", action="append", default=[], metavar="[+-]N",
                   help="+N more than N cores, -N fewer, N exactly")
    p.add_argument("--ram", action="append", default=[], metavar="[+-]MB", help="RAM in MB, same form")
    p.add_argument("--speed", action="append", default=[], metavar="[+-]GHZ", help="CPU GHz, same form")
    _listing_options(p, "name")

    _subparser(subs, "pools", cmd_pools, "list pools and their render nodes")
    p = _subparser(subs, "poolshares", cmd_poolshares, "list pool shares (which job runs in which pool)")
    p.add_argument("--pool", action="append", default=[])
    _subparser(subs, "licenses", cmd_licenses, "list license counters")
    p = _subparser(subs, "audit", cmd_audit, "who did what: the audit trail, newest first")
    p.add_argument("--user", help="one user's requests")
    p.add_argument("--since", metavar="WHEN", help="this long ago (2h, 7d) or a date")
    p.add_argument("--job", type=int, metavar="ID", help="requests that acted on this job")
    p.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")

    actions = [
        ("pause", "pause jobs: nothing new starts, running commands go on", None),
        ("resume", "resume paused jobs", None),
        ("cancel", "cancel jobs (their running commands are killed)", None),
        ("restart", "restart jobs from scratch, and the jobs that depend on them", None),
        ("retry", "restart only the failed (ERROR, TIMEOUT) commands of jobs", None),
        ("done", "force jobs DONE", None),
        ("set-prio", "set the priority (dispatchKey) of jobs", ("VALUE", float)),
        ("set-dispatchkey", "same as set-prio", ("VALUE", float)),
        ("set-maxrn", "set how many commands of each job may run at once (-1: no limit)", ("VALUE", int)),
        ("set-pool", "move jobs to another pool", ("POOL", str)),
    ]
    for name, help, value in actions:
        action = "set-prio" if name == "set-dispatchkey" else name
        p = _subparser(subs, name, job_action(action, (lambda a: _value_text(a.value)) if value else None),
                       help + "; give job ids or filters",
                       epilog="Acting by filter needs at least one filter: never every job by accident.")
        if value:
            p.add_argument("value", metavar=value[0], type=value[1])
        _job_targets(p)
        if name == "restart":
            p.add_argument("--no-cascade", action="store_true",
                           help="leave the jobs that depend on these alone")

    p = _subparser(subs, "rn-pause", cmd_rn_pause, "pause render nodes: they take no new work")
    p.add_argument("names", nargs="+", metavar="NAME")
    p.add_argument("--kill", action="store_true", help="also stop what they run (it goes back to the queue)")
    p = _subparser(subs, "rn-resume", cmd_rn_resume, "resume render nodes (lifts a quarantine too)")
    p.add_argument("names", nargs="+", metavar="NAME")
    p = _subparser(subs, "quarantine", cmd_quarantine, "put render nodes in quarantine")
    p.add_argument("names", nargs="+", metavar="NAME")
    p = _subparser(subs, "unquarantine", cmd_unquarantine, "release render nodes from quarantine")
    p.add_argument("names", nargs="+", metavar="NAME")
    p = _subparser(subs, "license", cmd_license, "set the number of tokens of a license (creates it)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("count", metavar="COUNT", type=int)
    p = _subparser(subs, "pool-create", cmd_pool_create, "create an empty pool")
    p.add_argument("name", metavar="NAME")
    p = _subparser(subs, "pool-delete", cmd_pool_delete, "delete a pool that holds no job")
    p.add_argument("name", metavar="NAME")
    p = _subparser(subs, "pool-set-nodes", cmd_pool_set_nodes, "set the render nodes of a pool")
    p.add_argument("name", metavar="NAME")
    p.add_argument("rns", nargs="+", metavar="RN")

    p = _subparser(subs, "log", cmd_log, "print a command's log (the dispatcher reads it from its worker)")
    p.add_argument("command", type=int, metavar="COMMAND_ID")
    p.add_argument("-f", "--follow", action="store_true", help="go on printing until the command ends")
    p.add_argument("-n", "--tail", type=int, metavar="N", help="start with the last N lines")
    return parser, subs


def _value_text(value):
    return f"{value:g}" if isinstance(value, float) else str(value)


def _with_default_subcommand(argv, subs):
    """`puliquery [options] [restrictions]` means `puliquery [options] jobs [restrictions]`."""
    i = 0
    while i < len(argv):
        word = argv[i]
        if word in ("-h", "--help"):
            return argv
        if word in ("--server", "--token"):
            i += 2
            continue
        if word.startswith(("--server=", "--token=")) or word in ("--json", "--csv"):
            i += 1
            continue
        break
    if i < len(argv) and argv[i] in subs.choices:
        return argv
    return argv[:i] + ["jobs"] + argv[i:]


def main(argv=None):
    parser, subs = build_parser()
    argv = _with_default_subcommand(list(sys.argv[1:] if argv is None else argv), subs)
    args = parser.parse_args(argv)
    return run(PROG, args.func, args)


if __name__ == "__main__":
    sys.exit(main())
