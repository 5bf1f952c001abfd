"""Flask ``send_file`` on a priced, authorize-capture route, for gunicorn (test_stack_sendfile.py).

The file is ``STACK_DOWNLOAD_FILE``. Beside the strace count, the app keeps a
second witness that needs no ptrace: gunicorn's ``Response.sendfile`` (which
gunicorn calls only when the body *is* its ``wsgi.file_wrapper``), wrapped to
record whether it sent the file; ``/probe/sendfile`` reads the record back.
This module is imported in the worker, so the wrapper is the worker's.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, jsonify, request, send_file
from gunicorn.http import wsgi as gunicorn_wsgi

from st_middleware import Price, SmallTransfersWSGI, charge_of

FILE = os.environ["STACK_DOWNLOAD_FILE"]
MICROS_PER_KIB = 1
SENDFILE_CALLS: list[bool] = []

_sendfile = gunicorn_wsgi.Response.sendfile


def _recording_sendfile(self: Any, respiter: Any) -> bool:
    sent = bool(_sendfile(self, respiter))
    SENDFILE_CALLS.append(sent)
    return sent


gunicorn_wsgi.Response.sendfile = _recording_sendfile

app = Flask(__name__)


@app.get("/health")
def health() -> str:
    return "ok"


@app.get("/probe/sendfile")
def probe() -> Any:
    return jsonify(SENDFILE_CALLS)


@app.get("/files/big.bin")
def download() -> Any:
    charge = charge_of(request)
    assert charge is not None
    # Usage-based: a micro per KiB delivered, at most the authorization.
    charge.capture_micros = os.path.getsize(FILE) // 1024 * MICROS_PER_KIB
    return send_file(FILE, mimetype="application/octet-stream")


app.wsgi_app = SmallTransfersWSGI(  # type: ignore[method-assign]
    app.wsgi_app, pricing={"/files/*": Price(5000, mode="authorize-capture")}
)
