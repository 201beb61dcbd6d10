"""puliexec: submit a command line to the farm as a job, optionally follow it to its end.

    puliexec [options] -- command args...
    puliexec --frames 1-100 --packet 10 -- blender -b f.blend -f %%MI_FRAME%%
    puliexec --openjd template.yaml -p Frames=1-100 -p Scene=/jobs/a.blend [--wait]

Without ``--``, options are read up to the first word that is not one. The command is run as the
argv given here, without a shell (write ``-- sh -c '...'`` for shell syntax). With ``--frames``,
``%%MI_FRAME%%``, ``%%MI_START%%`` and ``%%MI_END%%`` in it are replaced by each frame number and
by the first and last frames of its packet. With ``--openjd``, an Open Job Description job
template is submitted instead, with its job parameters given by ``-p NAME=VALUE``.

Exit status: 0 submitted (with ``--wait``/``--local``: the job ended DONE); 1 the job ended in
ERROR or CANCELED, or the dispatcher refused the job; 2 bad usage; 3 the dispatcher cannot be
reached; 130 interrupted.
"""
import argparse
import getpass
import json
import os
import re
import sys
import time

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
PROG = "puliexec"
# How long --wait keeps trying when the dispatcher stops answering (a restart, say).
UNREACHABLE_PATIENCE = 60.0
STATUS_NAMES = {0: "BLOCKED", 1: "READY", 2: "RUNNING", 3: "DONE", 4: "ERROR", 5: "CANCELED", 6: "PAUSED"}
DONE, ERROR, CANCELED = 3, 4, 5
CMD_PENDING = (0, 1, 2, 3, 4)           # command statuses BLOCKED..FINISHING
CMD_FAILED = (6, 7)                     # TIMEOUT, ERROR


class UsageError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def build_parser():
    p = Parser(
        prog=PROG, allow_abbrev=False,
        usage="%(prog)s [options] -- command [args...]",
        description="Submit a command line to the Puli farm as a job (or run it here with --local).",
        epilog="The command runs as the argv given, without a shell: use `-- sh -c '...'` for shell "
               "syntax. With --frames, %%MI_FRAME%%, %%MI_START%% and %%MI_END%% in the command are "
               "replaced per frame. Exit status: 0 submitted (with --wait/--local: the job ended DONE), 1 the "
               "job ended ERROR/CANCELED or was refused, 2 usage error, 3 dispatcher unreachable.",
    )
    job = p.add_argument_group("job")
    job.add_argument("-n", "--name", help="job name (default: \"Command Line: '<command>'\")")
    job.add_argument("-u", "--user", default=None, help="owner of the job (default: you)")
    job.add_argument("--pool", default="default", help="pool of render nodes (default: %(default)s)")
    job.add_argument("--prio", type=int, default=0, metavar="N",
                     help="dispatchKey: the job's weight in its pool (default: 0)")
    job.add_argument("--maxRN", type=int, default=-1, metavar="N",
                     help="at most N commands of the job at once (default: no limit)")
    job.add_argument("-P", "--prod", default=os.environ.get("PROD", ""), help="production tag (default: $PROD)")
    job.add_argument("--jobType", default="commandline", help="job type tag (default: %(default)s)")
    job.add_argument("--outFolder", default=None,
                     help="output folder tag, imageFolder (default: the current directory)")
    job.add_argument("--nbFrames", default=None, help="number-of-frames tag (default: the number of --frames)")
    job.add_argument("--paused", action="store_true", help="submit the job paused")
    job.add_argument("--time-delay", metavar="DELAY",
                     help="hold the job for this long: 3h30m, 100m, 90s, 2d (a bare number is minutes)")

    work = p.add_argument_group("frames and resources")
    work.add_argument("--frames", metavar="SPEC", help="frames to run: 1-100, or 1,5,10-20")
    work.add_argument("--packet", type=int, default=1, metavar="N", help="frames per command (default: 1)")
    work.add_argument("--cores", type=int, metavar="N", help="cores each command takes (default: a whole render node)")
    work.add_argument("--ram", "--minRam", dest="ram", type=int, default=0, metavar="MB",
                      help="RAM each command needs, in MB (--minRam: Puli's name)")
    work.add_argument("--licenses", default="", metavar="A,B", help="licenses each command takes a token of")
    work.add_argument("--requirements", metavar="JSON", help='render node requirements: \'{"softs": ["blender"]}\'')
    work.add_argument("--require", action="append", default=[], metavar="KEY=VALUE",
                      help="one requirement (repeatable): softs=blender,ffmpeg  os=linux  cores=8")
    work.add_argument("--max-attempt", type=int, default=1, metavar="N",
                      help="runs of a failing command before it stays ERROR (default: 1)")
    work.add_argument("--max-run-time", metavar="DURATION", help="kill a command running longer than this (90s, 2h...)")

    openjd = p.add_argument_group("Open Job Description")
    openjd.add_argument("--openjd", metavar="TEMPLATE",
                        help="submit this OpenJD job template (YAML or JSON) instead of a command line")
    openjd.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                        help="a job parameter's value for --openjd (repeatable)")

    where = p.add_argument_group("dispatcher and output")
    where.add_argument("--server", metavar="URL",
                       help="dispatcher: http://host:port (default: $PULI_SERVER, ~/.config/puli/client.yml, "
                            "/etc/puli/client.yml, localhost:8004)")
    where.add_argument("--token", metavar="TOKEN",
                       help="your token (default: $PULI_TOKEN, the 'token' of ~/.config/puli/client.yml, "
                            "/etc/puli/client.yml)")
    where.add_argument("--host", help="dispatcher host (Puli's option)")
    where.add_argument("--port", type=int, help="dispatcher port (Puli's option)")
    where.add_argument("--local", action="store_true", help="run the job here, without the farm")
    where.add_argument("--wait", action="store_true", help="follow the job to its end; exit 0 only if it ended DONE")
    where.add_argument("--json", action="store_true",
                       help='print {"id", "name", "commands", "url"} as one JSON line; with --wait, then the '
                            'final job as a second line')
    where.add_argument("-v", "--verbose", action="store_true", help="print the graph sent")
    p.add_argument("command", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return p


def split_argv(argv):
    """(option words, command words): around the first `--`, else options up to the first
    word that is not an option (argparse's REMAINDER does that part)."""
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:], True
    return argv, None, False


def parse_frames(spec):
    """[(first, last), ...] from "1-100" or "1,5,10-20"."""
    ranges = []
    for part in str(spec).split(","):
        part = part.strip()
        m = re.fullmatch(r"(-?\d+)(?:\s*-\s*(-?\d+))?", part)
        if not m:
            raise UsageError(f"--frames: {part!r} is not a frame or a range such as 1-100")
        first = int(m.group(1))
        last = int(m.group(2)) if m.group(2) is not None else first
        if last < first:
            raise UsageError(f"--frames: range {part!r} ends before it starts")
        ranges.append((first, last))
    return ranges


_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_delay(text, option, bare_unit="m"):
    """Seconds from 3h30m / 100m / 90s / 2d (a bare number is in `bare_unit`)."""
    text = str(text).strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text) * _UNITS[bare_unit]
    parts = re.findall(r"(\d+(?:\.\d+)?)([dhms])", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise UsageError(f"{option}: {text!r} is not a duration such as 3h30m, 100m or 90s")
    return sum(float(n) * _UNITS[u] for n, u in parts)


def parse_requirements(options):
    requirements = {}
    if options.requirements:
        try:
            value = json.loads(options.requirements)
        except ValueError as exc:
            raise UsageError(f"--requirements: not JSON ({exc})") from None
        if not isinstance(value, dict):
            raise UsageError('--requirements: expected a JSON object such as {"softs": ["blender"]}')
        requirements.update(value)
    for item in options.require:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--require: {item!r} is not KEY=VALUE")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        if key == "softs" and isinstance(value, str):
            value = [s.strip() for s in value.split(",") if s.strip()]
        requirements[key] = value
    return requirements


def parse(argv):
    parser = build_parser()
    options_words, command, explicit = split_argv(argv)
    options = parser.parse_args(options_words)
    if explicit:
        if options.command:
            raise UsageError(f"unexpected {options.command[0]!r} before '--'")
        options.command = command
    options.parameters = {}
    for item in options.param:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"-p: {item!r} is not NAME=VALUE")
        options.parameters[name.strip()] = value
    if options.openjd:
        if options.command:
            raise UsageError("--openjd submits a template: give no command with it")
        if options.local or options.frames:
            raise UsageError("--openjd cannot be combined with --local or --frames")
    elif options.param:
        raise UsageError("-p gives OpenJD job parameters: use it with --openjd")
    elif not options.command:
        raise UsageError("no command to run: puliexec [options] -- command [args...]")
    if options.server and options.host:
        raise UsageError("give the dispatcher with --server or with --host/--port, not both")
    for name in ("packet", "max_attempt"):
        if getattr(options, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
    if options.cores is not None and options.cores < 1:
        raise UsageError("--cores must be at least 1")
    if options.ram < 0:
        raise UsageError("--ram must not be negative")
    if options.port is not None and not 0 < options.port < 65536:
        raise UsageError(f"--port {options.port}: expected 1..65535")
    options.frame_ranges = parse_frames(options.frames) if options.frames else None
    options.delay = parse_delay(options.time_delay, "--time-delay") if options.time_delay else None
    options.run_time = parse_delay(options.max_run_time, "--max-run-time", "s") if options.max_run_time else 0
    options.requirement_dict = parse_requirements(options)
    return options


def build_graph(options):
    from puli.client import Graph, Task
    command = list(options.command)
    name = options.name or f"Command Line: '{command[0]}'"
    if options.frame_ranges:
        runner = "puli.commandwatcher.runners.DefaultCommandRunner"
        arguments = {"cmd": command, "packetSize": options.packet}
        if len(options.frame_ranges) == 1:
            arguments["start"], arguments["end"] = options.frame_ranges[0]
        else:
            arguments["framesList"] = ",".join(f"{a}-{b}" if a != b else str(a) for a, b in options.frame_ranges)
        nb_frames = sum(b - a + 1 for a, b in options.frame_ranges)
    else:
        runner = "puli.commandwatcher.runners.CommandLineRunner"
        arguments = {"args": command}
        nb_frames = 1
    tags = {
        "type": options.jobType,
        "prod": options.prod,
        "paused": "true" if options.paused else "false",
        "nbFrames": str(options.nbFrames if options.nbFrames is not None else nb_frames),
        "imageFolder": options.outFolder or os.getcwd(),
    }
    cores = {"minNbCores": options.cores, "maxNbCores": options.cores} if options.cores else {}
    licenses = "&".join(x.strip() for x in options.licenses.split(",") if x.strip())
    task = Task(name, arguments, runner=runner, tags=tags, lic=licenses,
                ramUse=options.ram, timer=(time.time() + options.delay) if options.delay else None,
                dispatchKey=options.prio, requirements=options.requirement_dict, maxAttempt=options.max_attempt,
                maxRunTime=options.run_time, **cores)
    return Graph(name, task, user=options.user or getpass.getuser(), poolName=options.pool, maxRN=options.maxRN)


# -- output --------------------------------------------------------------------------------------

def err(message):
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


def bar(fraction, width=20):
    filled = max(0, min(width, int(round(fraction * width))))
    return "#" * filled + "." * (width - filled)


class Progress:
    """A bar redrawn in place on a terminal, one line per change otherwise."""

    def __init__(self, stream, live):
        self.stream = stream
        self.live = live
        self.last = None
        self.drawn = False

    def show(self, job_id, node):
        status = STATUS_NAMES.get(node["status"], str(node["status"]))
        done, total = node["doneCommandCount"], node["commandCount"]
        pct = int(node["completion"] * 100)
        if self.live:
            line = f"job {job_id} {status:<8} [{bar(node['completion'])}] {pct:3d}% {done}/{total}"
            self.stream.write("\r\x1b[K" + line)
            self.drawn = True
        else:
            line = f"job {job_id} {status} {pct}% {done}/{total}"
            if line == self.last:
                return
            self.stream.write(line + "\n")
        self.last = line
        self.stream.flush()

    def end(self):
        if self.live and self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False


def ended(server, job_id, node):
    """Whether the job has reached its end: DONE or CANCELED, or ERROR with nothing left to run
    and no failed command waiting for a retry."""
    status = node["status"]
    if status in (DONE, CANCELED):
        return True
    if status != ERROR:
        return False
    pending = server.get(f"/tasks/{job_id}/commands", {"status": list(CMD_PENDING), "limit": 0})
    if pending["total"]:
        return False
    failed = server.get(f"/tasks/{job_id}/commands", {"status": list(CMD_FAILED), "limit": 100_000})
    max_attempt = node.get("maxAttempt")
    if max_attempt is None:         # a TaskGroup: each command's own task decides
        tasks = {}
        for c in failed["commands"]:
            if c["task"] not in tasks:
                tasks[c["task"]] = server.get(f"/nodes/{c['task']}").get("maxAttempt") or 1
        return not any(c["attempt"] < tasks[c["task"]] for c in failed["commands"])
    return not any(c["attempt"] < max_attempt for c in failed["commands"])


def follow(server, job_id, progress, interval=0.5):
    """Poll the job until it ends; return its final node."""
    from puli.client import ServerUnreachable
    unreachable_since = None
    while True:
        try:
            node = server.get(f"/nodes/{job_id}")
            if progress is not None:
                progress.show(job_id, node)
            if ended(server, job_id, node):
                return node
            unreachable_since = None
        except ServerUnreachable:
            now = time.monotonic()
            if unreachable_since is None:
                unreachable_since = now
                if progress is not None:
                    progress.end()
                err(f"lost the dispatcher at {server.url}; trying again for {UNREACHABLE_PATIENCE:g} s")
            elif now - unreachable_since > UNREACHABLE_PATIENCE:
                raise
        time.sleep(interval)


# -- main ----------------------------------------------------------------------------------------

def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        options = parse(argv)
    except UsageError as exc:
        err(f"{exc} (see {PROG} --help)")
        return EXIT_USAGE
    except SystemExit as exc:           # --help
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    from puli.client import GraphError, PuliError, RequestError, ServerUnreachable, server_url
    from puli.client.errors import GraphSubmissionError, SubmissionUnreachable

    try:
        if options.openjd:
            return submit_openjd(server_url(options.server or options.host, options.port), options)
        graph = build_graph(options)
        if options.verbose:
            print(json.dumps(graph.prepareGraphRepresentation(), indent=1), file=sys.stderr)
        if options.local:
            return run_local(graph, options)
        url = server_url(options.server or options.host, options.port)
        return submit(graph, url, options)
    except KeyboardInterrupt:
        err("interrupted")
        return EXIT_INTERRUPTED
    except (ServerUnreachable, SubmissionUnreachable) as exc:
        err(str(exc))
        return EXIT_UNREACHABLE
    except (GraphSubmissionError, RequestError) as exc:
        err(str(exc))
        return EXIT_FAILED
    except GraphError as exc:
        err(str(exc))
        return EXIT_USAGE
    except PuliError as exc:            # a bad address or client config
        err(str(exc))
        return EXIT_USAGE


def run_local(graph, options):
    from puli.client import DONE as NODE_DONE
    status = graph.execute(verbose=not options.json)
    if options.json:
        print(json.dumps({"name": graph.name, "status": status, "statusName": STATUS_NAMES.get(status, str(status))}))
    return EXIT_OK if status == NODE_DONE else EXIT_FAILED


def submit_openjd(url, options):
    from puli.client import submit_openjd as send
    pool = options.pool if options.pool != "default" else None
    _, body = send(options.openjd, options.parameters, pool=pool, host=url,
                   token=options.token)
    return submitted(body, body.get("name"), url, options)


def submit(graph, url, options):
    location, body = graph.submit(url, token=options.token)
    return submitted(body, graph.name, url, options)


def submitted(body, name, url, options):
    """Say the job was submitted; with --wait, follow it to its end."""
    from puli.client import Server
    job_id = body["id"]
    node_url = f"{url}/nodes/{job_id}"
    if options.json:
        print(json.dumps({"id": job_id, "name": body.get("name", name), "commands": body.get("commands"),
                          "url": node_url}), flush=True)
    else:
        print(f"job {job_id} submitted: {body.get('name', name)!r}, {body.get('commands')} command(s), "
              f"{'paused, ' if options.paused else ''}{node_url}", flush=True)
    if not options.wait:
        return EXIT_OK
    with Server(url, token=options.token) as server:
        progress = None if options.json else Progress(sys.stdout, sys.stdout.isatty())
        try:
            node = follow(server, job_id, progress)
        except KeyboardInterrupt:
            if progress is not None:
                progress.end()
            err(f"stopped following job {job_id}; it goes on on the farm ({node_url})")
            return EXIT_INTERRUPTED
        if progress is not None:
            progress.end()
    status = node["status"]
    if options.json:
        print(json.dumps(node), flush=True)
    else:
        name = STATUS_NAMES.get(status, str(status))
        print(f"job {job_id} ended {name}: {node['doneCommandCount']}/{node['commandCount']} command(s) done",
              flush=True)
    return EXIT_OK if status == DONE else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
