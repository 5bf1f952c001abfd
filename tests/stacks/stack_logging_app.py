"""The proxy tests' WSGI app, with the logging lines proposed for the README (gunicorn).

gunicorn configures only its own loggers (``--log-level`` included); these
lines give the ``st_middleware`` logger gunicorn's error-log handlers and
level, so charges show up where gunicorn's own messages do.
"""

from __future__ import annotations

import logging

from stack_proxy_app import wsgi as app

gunicorn_log = logging.getLogger("gunicorn.error")
st_log = logging.getLogger("st_middleware")
st_log.handlers = gunicorn_log.handlers
st_log.setLevel(gunicorn_log.level)

__all__ = ["app"]
