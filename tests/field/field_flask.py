"""The matrix's Flask 3 app, wrapped the documented way: ``app.wsgi_app = SmallTransfersWSGI(...)``.

``app`` is served at the root; ``dispatched`` mounts the same (wrapped) app at
``/shop`` under Werkzeug's ``DispatcherMiddleware``, which hands Flask the
rest of the path, slashes and all (``/shop//paid`` reaches it as ``//paid``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from field_apps import CELL_HEADER, SECRET_HEADER, SECRET_VALUE, middleware_options, record, wrapped
from flask import Flask, Response, request
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from st_middleware import SmallTransfersWSGI

app = Flask(__name__)


def _answer(handler: str, *, secret: bool) -> Response:
    # PATH_INFO as the server gave it (latin-1 text): what routing started from.
    record(
        handler,
        request.method,
        request.environ.get("PATH_INFO", ""),
        request.headers.get(CELL_HEADER),
    )
    response = Response(f"{handler}: the content\n", mimetype="text/plain")
    if secret:
        response.headers[SECRET_HEADER] = SECRET_VALUE
    return response


@app.route("/paid", methods=["GET", "POST"])
def paid() -> Response:
    return _answer("paid", secret=True)


@app.route("/api/<path:rest>", methods=["GET", "POST"])
def api(rest: str) -> Response:
    return _answer("api", secret=True)


@app.get("/search")
def search_form() -> Response:
    return _answer("search", secret=False)  # GET /search is free


@app.post("/search")
def search_results() -> Response:
    return _answer("search", secret=True)


@app.get("/report")
def report() -> Response:
    return _answer("report", secret=True)


@app.get("/free")
def free() -> Response:
    return _answer("free", secret=False)


@app.get("/")
def home() -> Response:
    return _answer("home", secret=False)


if wrapped():
    app.wsgi_app = SmallTransfersWSGI(app.wsgi_app, **middleware_options())  # type: ignore[method-assign]


def _nothing_here(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    """The dispatcher's root app: everything outside /shop is a plain 404."""
    start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "10")])
    return [b"not here.\n"]


dispatched = DispatcherMiddleware(_nothing_here, {"/shop": app})
