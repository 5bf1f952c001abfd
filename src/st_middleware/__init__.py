"""st-middleware: charge visitors of any WSGI or ASGI app per request through Small Transfers.

Wrap an app in three lines::

    from st_middleware import SmallTransfersWSGI
    app = SmallTransfersWSGI(app, pricing={"/paid": 3000})   # 0.003 USD per request

Keys come from keywords or ``SMALL_TRANSFERS_*`` environment variables.
"""

from ._asgi import SmallTransfersASGI
from ._charge import Charge, ChargeEvent, ChargeMode, Outcome, Price
from ._customer import Customer
from ._errors import (
    BadRequest,
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
from ._pages import format_micros
from ._request import Request
from ._values import MiddlewareMissing, charge_of, customer_of
from ._version import __version__
from ._wsgi import SmallTransfersWSGI

__all__ = [
    "BadRequest",
    "Charge",
    "ChargeEvent",
    "ChargeMode",
    "ChargeRefused",
    "ConfigurationError",
    "CookieTooLarge",
    "Customer",
    "MiddlewareMissing",
    "Outcome",
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
    "charge_of",
    "customer_of",
    "format_micros",
]
