"""A gunicorn config file (``gunicorn -c``) that lets the ``st_middleware`` log through.

Any ``logconfig_dict`` makes gunicorn apply its own logging defaults, whose
root logger is INFO: the middleware's records propagate to it. This one
only sends the root logger to stderr, beside gunicorn's error log.
"""

logconfig_dict = {"root": {"level": "INFO", "handlers": ["error_console"]}}
