"""The WSGI entry point: Django wrapped by the Small Transfers middleware."""

import os

from django.conf import settings
from django.core.wsgi import get_wsgi_application

from st_middleware import SmallTransfersWSGI

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_app.settings")

application = SmallTransfersWSGI(get_wsgi_application(), pricing=settings.SMALL_TRANSFERS_PRICING)
