"""``python -m examples.demo``: the emulator and the paid demo shop, until Ctrl-C.

Starts the Small Transfers emulator (default http://127.0.0.1:8100) and the
demo shop (default http://127.0.0.1:8000) in one process; Ctrl-C or SIGTERM
stops both. Ports: ``--port`` / ``--emulator-port``.
"""

from __future__ import annotations

import argparse
import logging
import secrets
import signal
import sys
import threading
from socketserver import ThreadingMixIn
from types import FrameType
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from st_middleware.emulator import Emulator

from .app import SHOP_NAME, make_app


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # Access log without the query string (it carries the authorization code).
        logging.getLogger("demo").info("%s %s -> %s", self.command, self.path.split("?")[0], code)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.demo", description=__doc__)
    parser.add_argument("--port", type=int, default=8000, help="the shop's port")
    parser.add_argument("--emulator-port", type=int, default=8100)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")

    emulator = Emulator(port=args.emulator_port, merchant_name=SHOP_NAME)
    emulator.create_customer(
        first_name="Demo", last_name="Visitor", email="demo@example.com", limit_micros=10_000
    )
    try:
        emulator.start()
        app = make_app(
            emulator_url=emulator.url,
            publishable_key=emulator.publishable_key,
            secret_key=emulator.secret_key,
            session_secret=secrets.token_urlsafe(32),  # new each run: old cookies just expire
        )
        server = make_server(
            "127.0.0.1",
            args.port,
            app,
            server_class=_ThreadingWSGIServer,
            handler_class=_QuietHandler,
        )
    except OSError as error:
        emulator.stop()
        print(f"cannot start the demo: {error} (is something else on that port?)", file=sys.stderr)
        return 1

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    shop_url = f"http://127.0.0.1:{server.server_port}/"
    print(
        f"\n  Micro Shop (paid demo):       {shop_url}\n"
        f"  Small Transfers emulator:     {emulator.url}/\n"
        f"  Customer dashboard:           {emulator.url}/customer/dashboard\n\n"
        "  Open the shop, sign in (the emulator asks you to Allow), pay per page.\n"
        "  Press Ctrl-C to stop.\n",
        flush=True,
    )
    while not stop.wait(0.5):
        pass
    print("stopping...", flush=True)
    server.shutdown()
    server.server_close()
    app.close()
    emulator.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
