"""``python -m st_middleware COMMAND``: tools for merchants (``check``, ``captures``).

Each command is a subparser with its own handler, so later commands slot in
beside the others without touching them. The logic lives elsewhere
(``_check.py`` for ``check``, ``_operators.py`` for ``captures``); this
module only parses and prints.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from ._check import DEFAULT_CALLBACK_PATH, DEFAULT_TIMEOUT, run_checks
from ._operators import run_captures
from ._version import __version__

_CHECK_DESCRIPTION = """\
Check a Small Transfers setup before the first visitor does. The settings are
read as the middleware reads them: these options first, else the environment
variables SMALL_TRANSFERS_PUBLISHABLE_KEY, SMALL_TRANSFERS_SECRET_KEY,
SMALL_TRANSFERS_BASE_URL and SMALL_TRANSFERS_SESSION_SECRET.

One line per check, then a summary:

  STATUS  CHECK           WHAT IT FOUND AND WHAT TO DO
  ok      keys            accepted: Small Transfers refused only the made-up ...
  summary: 5 ok, 1 warn, 0 FAIL

STATUS is ok, warn (works, but look) or FAIL (the middleware will not work).

checks:
  configuration   the settings pass the middleware's own validation (keys
                  present and not swapped, base URL an origin without
                  /api/v1, callback path); warn on plain http to another host
  session-secret  SMALL_TRANSFERS_SESSION_SECRET is set and long enough;
                  only a warning when unset, since check does not need it
  reachable       GET BASE_URL/ answers within --timeout; otherwise says
                  whether DNS, connection refused, TLS or timeout stopped it
  keys            POST BASE_URL/api/v1/oauth/tokens with the keys and a
                  made-up sign-in code: a refused code proves the keys, a
                  401 refutes them; nothing is charged, no customer involved
  test-live       warns on a pk_test_ key against the live host, a pk_live_
                  key against the test host, or keys of two different modes
  redirect-uri    --redirect-uri is absolute, https unless on this machine,
                  and ends with the callback path; without it, the URL to
                  register at Small Transfers

The secret key is never printed beyond its sk_test_/sk_live_ prefix. Prefer
the environment variable to --secret-key: command lines show in `ps` and stay
in shell history.

exit status: 0 when no line is FAIL, 1 when one is, 2 on a usage error."""

_CHECK_EPILOG = """\
examples:
  python -m st_middleware check
  python -m st_middleware check --base-url http://127.0.0.1:8100 \\
      --publishable-key pk_test_emulator          # against a local emulator
  python -m st_middleware check --redirect-uri https://shop.example/smalltransfers/callback
  python -m st_middleware check | grep '^FAIL'"""

_CAPTURES_DESCRIPTION = """\
List the captures not confirmed yet in a store (authorize-capture mode):
pending ones, which the capture workers keep retrying, and failed ones, which
got a terminal answer and are never tried again. The store is the one the
servers use: --store, else SMALL_TRANSFERS_STORE (SQLite or Redis; memory://
lives inside one process and cannot be read from here).

One line per capture (wide: shortened here), then a summary:

  STATE    ID      AMOUNT                    CUSTOMER  REQUEST    AGE    ATTEMPTS  NEXT ATTEMPT
  pending  9f2c:c  2500 micros (0.0025 USD)  cus_81a4  GET /paid  2m05s  4         in 31s
  failed   77e0:c  1200 micros (0.0012 USD)  cus_81a4  GET /paid  1h02m  1         never (failed)
  2 captures in sqlite:////var/lib/app/st.db: 1 pending, 1 failed

with each line's LAST ERROR at its end (e.g. "server_error: Small Transfers
answered 500").

NEXT ATTEMPT is "due now", "in 31s", "in flight" (a worker is sending it
right now) or "never (failed)". Access tokens are kept sealed in the store
and are never printed.

--retry ID makes one capture due now; ID is the capture's ID, its charge id
or its idempotency key (as in the middleware's log lines). A pending capture
is rescheduled; a failed one is put back as pending (after you fixed the
cause, say merchant keys). The capture worker of any running server on this
store sends it within about a second; a server starts its worker at its
first request. A capture in flight is left alone.

exit status: 0 on success, 1 when the store is unavailable or --retry found
nothing to do, 2 on a usage error."""

_CAPTURES_EPILOG = """\
examples:
  python -m st_middleware captures --store sqlite:////var/lib/app/st.db
  SMALL_TRANSFERS_STORE=redis://cache:6379/0 python -m st_middleware captures --json
  python -m st_middleware captures --retry ch_7894e4f55a607c9aa8577d00"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m st_middleware",
        description="Tools for merchants using st-middleware.",
    )
    parser.add_argument("--version", action="version", version=f"st-middleware {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    check = commands.add_parser(
        "check",
        help="check keys, base URL and redirect URI against Small Transfers",
        description=_CHECK_DESCRIPTION,
        epilog=_CHECK_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument(
        "--publishable-key",
        metavar="PK",
        help="default: $SMALL_TRANSFERS_PUBLISHABLE_KEY",
    )
    check.add_argument(
        "--secret-key",
        metavar="SK",
        help="default: $SMALL_TRANSFERS_SECRET_KEY (prefer the variable)",
    )
    check.add_argument(
        "--base-url",
        metavar="URL",
        help="default: $SMALL_TRANSFERS_BASE_URL, else the test host for pk_test_ keys "
        "and the live host otherwise, as the middleware decides",
    )
    check.add_argument(
        "--redirect-uri",
        metavar="URL",
        help="the redirect_uri you give the middleware, if any",
    )
    check.add_argument(
        "--callback-path",
        metavar="PATH",
        help=f"the middleware's callback_path, if not the default {DEFAULT_CALLBACK_PATH}",
    )
    check.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=DEFAULT_TIMEOUT,
        metavar="S",
        help=f"seconds allowed for each call to Small Transfers (default: {DEFAULT_TIMEOUT:g})",
    )
    check.set_defaults(handler=_check)

    captures = commands.add_parser(
        "captures",
        help="list pending and failed captures in the state store; retry one",
        description=_CAPTURES_DESCRIPTION,
        epilog=_CAPTURES_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    captures.add_argument(
        "--store",
        metavar="URL",
        help="sqlite:////ABSOLUTE/PATH.db or redis://HOST:PORT/DB "
        "(default: $SMALL_TRANSFERS_STORE)",
    )
    captures.add_argument(
        "--retry",
        metavar="ID",
        help="make this capture due now (its ID, charge id or idempotency key)",
    )
    captures.add_argument("--json", action="store_true", help="print JSON for machines")
    captures.set_defaults(handler=_captures)
    return parser


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value <= 120:
        raise argparse.ArgumentTypeError("must be more than 0 and at most 120 seconds")
    return value


def _check(args: argparse.Namespace) -> int:
    # The configuration's own test/live warning would reach stderr through
    # logging's last-resort handler; the report has a test-live line for it.
    logging.getLogger("st_middleware").addHandler(logging.NullHandler())
    report = run_checks(
        publishable_key=args.publishable_key,
        secret_key=args.secret_key,
        base_url=args.base_url,
        redirect_uri=args.redirect_uri,
        callback_path=args.callback_path,
        timeout=args.timeout,
    )
    for line in report.lines():
        print(line)
    sys.stdout.flush()
    return 0 if report.passed else 1


def _captures(args: argparse.Namespace) -> int:
    status = run_captures(store_url=args.store, retry=args.retry, as_json=args.json)
    sys.stdout.flush()
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
