"""puli-farmsim: a farm of simulated render nodes against a real dispatcher.

    puli-farmsim --dispatcher https://manager:8443 --token-file sim.token --nodes 1000 \\
        --cores 8 --pools sim --durations uniform:20-60 --run-for 600

Each node registers, heartbeats and runs what it is given for a simulated duration (the
command's own `duration` argument, a `sleep N` command, else --durations). At the end (after
--run-for seconds, or on SIGINT/SIGTERM) it prints one JSON object: figures, and its ledger's
verdict — every command that ran more than once or was lost. Exit status 3 when there is one.
"""
import argparse
import asyncio
import json
import logging
import os
import sys
from pathlib import Path

from .behaviour import parse_distribution
from .farm import Options, SimFarm

LEDGER_FAILED = 3


def _fraction(text):
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a fraction between 0 and 1")
    return value


def _seconds(text):
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is not a number of seconds")
    return value


def _distribution(text):
    try:
        parse_distribution(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _count(low):
    def parse(text):
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"{text} is less than {low}")
        return value
    return parse


def parser():
    p = argparse.ArgumentParser(prog="puli-farmsim", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dispatcher", default=os.environ.get("PULI_DISPATCHER", "http://127.0.0.1:8004"),
                   help="the dispatcher's URL (PULI_DISPATCHER)")
    p.add_argument("--token", default="", help="a worker token (PULI_TOKEN); --token-file is better")
    p.add_argument("--token-file", default="", help="a file holding the worker token")
    p.add_argument("--query-token-file", default="",
                   help="a file holding a viewer token: at the end, the ledger is checked against "
                        "what the dispatcher says of every task the farm ran")
    p.add_argument("--ca-file", default="", help="the CA of the dispatcher's TLS certificate")
    p.add_argument("--nodes", type=_count(1), default=10, help="simulated render nodes (default 10)")
    p.add_argument("--cores", type=_count(1), default=1, help="cores of each node (default 1)")
    p.add_argument("--ram", type=_count(1), default=16000, help="RAM of each node, MB (default 16000)")
    p.add_argument("--gpus", type=_count(0), default=0, help="GPUs each node reports (default 0)")
    p.add_argument("--pools", default="", help="comma-separated pools the nodes join")
    p.add_argument("--name-prefix", default="sim", help="node names: <prefix>00000, ... (default sim)")
    p.add_argument("--address", default="127.77", help="the nodes listen on <address>.x.y (default 127.77)")
    p.add_argument("--port", type=_count(0), default=0, help="the nodes' port (default 0: any free one)")
    p.add_argument("--heartbeat-interval", type=_seconds, default=8.0, help="s (default 8, the worker's)")
    p.add_argument("--progress-interval", type=_seconds, default=0.0,
                   help="s between progress reports of a run (default 0: none)")
    p.add_argument("--durations", type=_distribution, default="fixed:1",
                   help="how long a command runs when it does not say: fixed:S, uniform:A-B, exp:MEAN")
    p.add_argument("--fail-fraction", type=_fraction, default=0.0, help="commands ending ERROR")
    p.add_argument("--die-every", type=_seconds, default=0.0,
                   help="s between two node deaths across the farm (default 0: none)")
    p.add_argument("--down-for", type=_seconds, default=30.0,
                   help="s a dead node stays down, then reboots (0: for good; default 30)")
    p.add_argument("--slow-fraction", type=_fraction, default=0.0, help="nodes slow to answer")
    p.add_argument("--slow-delay", type=_seconds, default=2.0, help="s a slow node takes (default 2)")
    p.add_argument("--refuse-fraction", type=_fraction, default=0.0, help="nodes refusing assignments")
    p.add_argument("--connections", type=_count(1), default=64,
                   help="keep-alive connections to the dispatcher (default 64)")
    p.add_argument("--run-for", type=_seconds, default=0.0, help="s to run (default: until SIGINT/SIGTERM)")
    p.add_argument("--seed", type=int, default=None, help="the random seed, for a repeatable run")
    p.add_argument("--output", default="", help="write the JSON summary there, not to stdout")
    p.add_argument("--log-level", default="WARNING", help="default WARNING")
    return p


def _read_token(path, what):
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        sys.exit(f"puli-farmsim: cannot read the {what} file {path}: {exc.strerror}")


def main(argv=None):
    args = parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    token = args.token or os.environ.get("PULI_TOKEN", "")
    if args.token_file:
        token = _read_token(args.token_file, "token")
    options = Options(
        dispatcher=args.dispatcher, nodes=args.nodes, cores=args.cores, ram=args.ram, gpus=args.gpus,
        pools=tuple(p.strip() for p in args.pools.split(",") if p.strip()), name_prefix=args.name_prefix,
        address=args.address, port=args.port, heartbeat_interval=args.heartbeat_interval,
        progress_interval=args.progress_interval, durations=args.durations,
        fail_fraction=args.fail_fraction, die_every=args.die_every, down_for=args.down_for,
        slow_fraction=args.slow_fraction, slow_delay=args.slow_delay,
        refuse_fraction=args.refuse_fraction, run_for=args.run_for, token=token,
        query_token=_read_token(args.query_token_file, "query token") if args.query_token_file else "",
        ca_file=args.ca_file, connections=args.connections, seed=args.seed)
    if len(args.address.split(".")) != 2:
        sys.exit("puli-farmsim: --address takes the first two numbers of a loopback address, such as 127.77")
    if options.nodes > 250 * 256:
        sys.exit("puli-farmsim: at most 64000 nodes")
    try:
        summary = asyncio.run(SimFarm(options).run())
    except OSError as exc:
        sys.exit(f"puli-farmsim: {exc}")
    text = json.dumps(summary, indent=1)
    if args.output:
        Path(args.output).write_text(text + "\n")
    else:
        print(text)
    ledger = summary["ledger"]
    for command_id, why in ledger["ranTwice"].items():
        print(f"puli-farmsim: command {command_id} ran more than once: {why}", file=sys.stderr)
    for command_id, why in ledger["lost"].items():
        print(f"puli-farmsim: command {command_id} was lost: {why}", file=sys.stderr)
    return LEDGER_FAILED if ledger["ranTwice"] or ledger["lost"] else 0


if __name__ == "__main__":
    sys.exit(main())
