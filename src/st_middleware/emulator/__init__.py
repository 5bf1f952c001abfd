"""A local, faithful Small Transfers for development and tests (standard library only).

Run it with ``python -m st_middleware.emulator`` or from Python::

    from st_middleware.emulator import Emulator

    with Emulator(port=0) as emu:
        customer = emu.create_customer(first_name="Ada", last_name="Lovelace")
        code = emu.issue_code(customer_id=customer.id)
        ...  # point the middleware at base_url=emu.url
"""

from .faults import FaultPlan
from .records import ChargeRecord, Customer, Grant, Merchant
from .server import DEFAULT_PUBLISHABLE_KEY, DEFAULT_SECRET_KEY, Emulator

__all__ = [
    "DEFAULT_PUBLISHABLE_KEY",
    "DEFAULT_SECRET_KEY",
    "ChargeRecord",
    "Customer",
    "Emulator",
    "FaultPlan",
    "Grant",
    "Merchant",
]
