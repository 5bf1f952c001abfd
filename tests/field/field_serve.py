"""Serve ``module:attribute`` with Werkzeug's development server on 127.0.0.1.

``python field_serve.py field_flask:app``: ``make_server`` (what ``run_simple``
uses, minus the reloader) on a port the OS picks, announced on stdout as
``Serving on http://127.0.0.1:PORT`` so the test reads the port back with no
race. Threaded, as ``run_simple`` and ``flask run`` are by default.
"""

from __future__ import annotations

import importlib
import sys

from werkzeug.serving import make_server


def main() -> None:
    module, _, attribute = sys.argv[1].partition(":")
    app = getattr(importlib.import_module(module), attribute)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    print(f"Serving on http://127.0.0.1:{server.server_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
