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
from ._observe import CallObservation, Observer
from ._pages import (
    FAVICON_LINK,
    FAVICON_SVG,
    SIGN_IN_BUTTON_CSS,
    format_micros,
    sign_in_button,
)
from ._request import Request
from ._store import AsyncStore, CaptureEntry, Store, StoreUnavailable
from ._values import MiddlewareMissing, charge_of, customer_of
from ._version import __version__
from ._wsgi import SmallTransfersWSGI

__all__ = [
    "FAVICON_LINK",
    "FAVICON_SVG",
    "SIGN_IN_BUTTON_CSS",
    "AsyncStore",
    "BadRequest",
    "CallObservation",
    "CaptureEntry",
    "Charge",
    "ChargeEvent",
    "ChargeMode",
    "ChargeRefused",
    "ConfigurationError",
    "CookieTooLarge",
    "Customer",
    "MiddlewareMissing",
    "Observer",
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
    "Store",
    "StoreUnavailable",
    "__version__",
    "charge_of",
    "customer_of",
    "format_micros",
    "sign_in_button",
]
