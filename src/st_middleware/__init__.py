"""st-middleware: charge visitors of any WSGI or ASGI app per request through Small Transfers.

Wrap an app in three lines::

    from st_middleware import SmallTransfersWSGI
    app = SmallTransfersWSGI(app, pricing={"/paid": 3000})   # 0.003 USD per request

Keys come from keywords or ``SMALL_TRANSFERS_*`` environment variables.
"""

from ._version import __version__
from .asgi import SmallTransfersASGI
from .charge import Charge, ChargeEvent, Price
from .customer import Customer
from .errors import (
    ChargeRefused,
    ConfigurationError,
    CookieTooLarge,
    PricingError,
    ProtocolError,
    ServiceUnavailable,
    SessionInvalid,
    SignInFailed,
    SignInRequired,
    SmallTransfersError,
)
from .request import Request
from .wsgi import SmallTransfersWSGI

__all__ = [
    "Charge",
    "ChargeEvent",
    "ChargeRefused",
    "ConfigurationError",
    "CookieTooLarge",
    "Customer",
    "Price",
    "PricingError",
    "ProtocolError",
    "Request",
    "ServiceUnavailable",
    "SessionInvalid",
    "SignInFailed",
    "SignInRequired",
    "SmallTransfersASGI",
    "SmallTransfersError",
    "SmallTransfersWSGI",
    "__version__",
]
