"""The ASGI entry point: Django wrapped by the Small Transfers middleware."""

import os

from django.conf import settings
from django.core.asgi import get_asgi_application

from st_middleware import SmallTransfersASGI

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_app.settings")

application = SmallTransfersASGI(get_asgi_application(), pricing=settings.SMALL_TRANSFERS_PRICING)
