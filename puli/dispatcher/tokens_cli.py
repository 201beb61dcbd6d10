"""puli-dispatcher tokens: make, list and revoke the farm's tokens in its database, whether or not
the dispatcher runs (it sees a change within auth.RECHECK seconds).

    puli-dispatcher [--config FILE] [--set k=v] tokens create --user NAME --role ROLE [--node NAME] [--expires 30d]
    puli-dispatcher ... tokens create --user NAME --role ROLE --stdin     (register the token read from stdin)
    puli-dispatcher ... tokens list [--json]
    puli-dispatcher ... tokens revoke ID... | --user NAME
"""
import json
import sys
import time

from ..config import Duration
from ..store import StoreError, open_store
from .auth import ROLES, check_token_fields, digest, new_token, public_row


def add_parser(subparsers):
    tokens = subparsers.add_parser("tokens", help="make, list or revoke tokens (see --help)",
                                   description="The farm's tokens, in the dispatcher's database.")
    actions = tokens.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="make a token and print it (alone) on stdout")
    create.add_argument("--user", required=True, help="whom the token speaks for")
    create.add_argument("--role", required=True, choices=ROLES)
    create.add_argument("--node", help="a worker token's render node (host:port or host)")
    create.add_argument("--expires", help="a duration from now (30d, 12h); default: never")
    create.add_argument("--stdin", action="store_true",
                        help="register the token read from stdin (say 'created' or 'unchanged')")
    listing = actions.add_parser("list", help="every token (never their values)")
    listing.add_argument("--json", action="store_true")
    revoke = actions.add_parser("revoke", help="revoke tokens by id, or every token of a user")
    revoke.add_argument("ids", nargs="*", type=int)
    revoke.add_argument("--user")


def run(args, settings):
    """The tokens subcommand; returns the exit status (one line on stderr when it fails)."""
    try:
        store = open_store(settings.db_url)
    except StoreError as exc:
        print(f"puli-dispatcher tokens: {exc}", file=sys.stderr)
        return 1
    try:
        return {"create": _create, "list": _list, "revoke": _revoke}[args.action](args, store)
    except (StoreError, ValueError) as exc:
        print(f"puli-dispatcher tokens: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()


def _create(args, store):
    node = args.node.lower() if args.node else None
    check_token_fields(args.user, args.role, node)
    expires = time.time() + Duration(minimum=1).from_text(args.expires) if args.expires else None
    if args.stdin:
        token = sys.stdin.readline().strip()
        if len(token) < 16:
            raise ValueError("the token read from stdin must be at least 16 characters")
        if store.find_token(digest(token)) is not None:
            print("unchanged")
            return 0
        store.create_token(digest(token), args.user, args.role, node, time.time(), expires)
        print("created")
        return 0
    token = new_token()
    store.create_token(digest(token), args.user, args.role, node, time.time(), expires)
    print(token)
    return 0


def _list(args, store):
    rows = [public_row(r) for r in store.list_tokens()]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0

    def when(t):
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else "-"
    print(f"{'ID':>4}  {'USER':<16} {'ROLE':<8} {'NODE':<24} {'CREATED':<16} {'LAST USED':<16} "
          f"{'EXPIRES':<16} STATE")
    for r in rows:
        print(f"{r['id']:>4}  {r['user']:<16} {r['role']:<8} {r['node'] or '-':<24} {when(r['created']):<16} "
              f"{when(r['lastUsed']):<16} {when(r['expires']):<16} {'revoked' if r['revoked'] else 'valid'}")
    return 0


def _revoke(args, store):
    if not args.ids and not args.user:
        raise ValueError("name the token ids to revoke, or --user NAME")
    done = store.revoke_tokens(args.ids, args.user) if not args.user else store.revoke_tokens(user=args.user)
    if not done:
        print("puli-dispatcher tokens: no such token that is not revoked already", file=sys.stderr)
        return 1
    print(f"revoked {', '.join(map(str, done))}")
    return 0
