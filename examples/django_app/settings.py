"""Settings of the Django example: the smallest project that serves two views."""

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "django-insecure-example-only")
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]
ROOT_URLCONF = "examples.django_app.urls"
MIDDLEWARE = ["examples.django_app.views.small_transfers_customer"]

# What each path costs, in micros (1 USD = 1,000,000); wsgi.py and asgi.py hand
# it to the Small Transfers middleware, whose keys come from SMALL_TRANSFERS_*.
SMALL_TRANSFERS_PRICING = {"/paid/": 3000}
