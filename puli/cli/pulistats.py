"""pulistats: the farm's statistics.

    pulistats [--server URL] [--window 24h]          a text summary of the farm
    pulistats report [--server URL] [--window 2h|24h|7d|30d|FROM..TO] [--out DIR]
                                                     a static HTML report of pygal charts
"""
import argparse
import datetime
import os
import sys

from ..client.server import PuliError, Server, ServerUnreachable, server_url
from ..stats import report
from .common import add_server_options


def parser():
    p = argparse.ArgumentParser(prog="pulistats", description="Puli farm statistics and reports.")
    add_server_options(p)
    p.add_argument("--window", default="24h", help="2h, 24h (default), 7d, 30d or FROM..TO (ISO dates)")
    sub = p.add_subparsers(dest="command")
    r = sub.add_parser("report", help="write a static HTML report of pygal charts")
    add_server_options(r, default=argparse.SUPPRESS)
    r.add_argument("--window", default=argparse.SUPPRESS, help="2h, 24h, 7d, 30d or FROM..TO")
    r.add_argument("--resolution", default="auto", help="seconds per point (300, 5m, 1h) or auto")
    r.add_argument("--out", default="pulistats-report", help="output directory (default ./pulistats-report)")
    return p


def fetch(server, window, resolution="auto"):
    return server.get("/stats/history", params={"window": window, "resolution": resolution, "jobs": "true"})


def text_summary(snapshot, hist):
    rn = snapshot["rendernodes"]
    lines = [f"Puli farm at {datetime.datetime.fromtimestamp(snapshot['date']):%Y-%m-%d %H:%M}",
             f"  render nodes  {rn['total']} ("
             + ", ".join(f"{k.lower()} {v}" for k, v in rn["renderNodesByStatus"].items() if v) + ")",
             f"  cores         {rn['totalCores'] - rn['idleCores']} used of {rn['totalCores']}",
             "  commands      " + ", ".join(f"{k.lower()} {v}" for k, v in snapshot["commands"].items()
                                             if v and k != "TOTAL"),
             "  jobs          " + ", ".join(f"{k.lower()} {v}" for k, v in snapshot["jobs"].items()
                                             if v and k != "TOTAL")]
    for lic in snapshot.get("licenses", []):
        lines.append(f"  license {lic['name']}: {lic['used']}/{lic['max']}")
    lines.append("")
    lines.append("Over the window:")
    if not hist["times"]:
        lines.append("  no samples recorded in this window yet")
    for label, value in report.summary_rows(hist):
        lines.append(f"  {label:<28}{value}")
    for job in sorted(hist.get("jobs") or [], key=lambda j: -(j.get("nodeHours") or 0))[:5]:
        lines.append(f"  top job {job['id']:<8} {job.get('name', '')[:30]:<30} "
                     f"{job.get('nodeHours') or 0:.3f} node-hours, user {job.get('user')}")
    return "\n".join(lines)


def main(argv=None):
    args = parser().parse_args(argv)
    try:
        with Server(server_url(args.server), token=args.token) as server:
            hist = fetch(server, args.window, getattr(args, "resolution", "auto"))
            if args.command == "report":
                manifest = report.build(hist, args.out)
                print(f"wrote {len(manifest['charts'])} charts to {os.path.abspath(args.out)}/index.html")
                return 0
            print(text_summary(server.get("/stats"), hist))
            return 0
    except ServerUnreachable as exc:
        print(f"pulistats: {exc}", file=sys.stderr)
        return 3
    except PuliError as exc:
        print(f"pulistats: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"pulistats: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
