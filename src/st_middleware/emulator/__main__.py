"""``python -m st_middleware.emulator``: run the emulator until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import io
import signal
import sqlite3
import sys
import threading
from types import FrameType

from .messages import ERROR_STATUSES
from .server import DEFAULT_MERCHANT_NAME, DEFAULT_PUBLISHABLE_KEY, DEFAULT_SECRET_KEY, Emulator


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except empty ones ("default: None" tells nothing)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or action.default == []:
            return action.help
        return super()._get_help_string(action)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m st_middleware.emulator",
        description="A local Small Transfers: the /api/v1 API, sign-in page and dashboard.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8100, help="0 picks a free port")
    parser.add_argument(
        "--db",
        metavar="PATH",
        help="SQLite file to keep data in (default: in memory, for this run)",
    )
    parser.add_argument(
        "--publishable-key", default=DEFAULT_PUBLISHABLE_KEY, help="the merchant's public key"
    )
    parser.add_argument(
        "--secret-key", default=DEFAULT_SECRET_KEY, help="the merchant's secret key"
    )
    parser.add_argument(
        "--merchant-name",
        default=DEFAULT_MERCHANT_NAME,
        metavar="NAME",
        help="the merchant's name on the sign-in page and the dashboard",
    )
    parser.add_argument(
        "--redirect-uri",
        action="append",
        default=[],
        metavar="URL",
        help="a registered redirect URI, matched exactly (repeatable; default: any "
        "plain http(s) URI on localhost, 127.0.0.1 or [::1])",
    )
    parser.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="also answer requests whose Host is NAME, or NAME:PORT (repeatable). Against "
        "DNS rebinding, the emulator otherwise answers only to its --host and to "
        "localhost, 127.0.0.1 and [::1] with its port (any IP address if --host is "
        "0.0.0.0 or ::). NAME without a port allows any port, e.g. behind a proxy",
    )
    parser.add_argument(
        "--admin",
        action="store_true",
        help="enable the /_emulator/ control API (faults, ledger, customers)",
    )
    faults = parser.add_argument_group("faults, applied to every /api/v1 request")
    faults.add_argument(
        "--latency", type=float, default=0.0, metavar="S", help="seconds to wait before answering"
    )
    faults.add_argument(
        "--fail-with",
        choices=sorted(ERROR_STATUSES),
        metavar="CODE",
        help="answer with this API error code and its status, one of: "
        + ", ".join(sorted(ERROR_STATUSES)),
    )
    faults.add_argument(
        "--drop",
        choices=["before", "after"],
        help="close the connection before or after processing",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="log each request's method, path and status, and each sign-in decision "
        "(Allow or Deny) and spending-limit change, to stderr",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the emulator in the foreground; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        emulator = Emulator(
            host=args.host,
            port=args.port,
            db=args.db,
            publishable_key=args.publishable_key,
            secret_key=args.secret_key,
            redirect_uris=args.redirect_uri,
            admin=args.admin,
            verbose=args.verbose,
            allowed_hosts=args.allow_host,
            merchant_name=args.merchant_name,
        )
    except sqlite3.Error as error:
        print(f"cannot open the database {args.db}: {error}", file=sys.stderr)
        return 1
    except ValueError as error:  # a malformed --allow-host
        parser.error(str(error))
    try:
        if args.latency or args.fail_with or args.drop:
            emulator.set_faults(latency=args.latency, error=args.fail_with, drop=args.drop)
    except ValueError as error:
        emulator.stop()
        parser.error(str(error))
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            emulator.start()
        except OSError as error:
            print(f"cannot listen on {args.host}:{args.port}: {error}", file=sys.stderr)
            return 1
        # A terminal that cannot show the dash must not stop the emulator.
        if isinstance(sys.stdout, io.TextIOWrapper):
            sys.stdout.reconfigure(errors="replace")
        # The emulator's own test keys: printing them is the point (copy them into the app).
        print(
            f"Small Transfers emulator on {emulator.url} — publishable key: "
            f"{emulator.publishable_key} secret key: {emulator.secret_key}",
            flush=True,
        )
        # A timed wait, so signals are handled promptly on every platform.
        while not stop.wait(0.5):
            pass
        print("Small Transfers emulator stopped", flush=True)
        return 0
    finally:
        emulator.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main())
