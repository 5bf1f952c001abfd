from collections.abc import Callable
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.html import format_html

from st_middleware import charge_of, customer_of


def small_transfers_customer(
    get_response: Callable[[HttpRequest], HttpResponse],
) -> Callable[[HttpRequest], HttpResponse]:
    """Django middleware: ``request.customer`` (a Customer or None) and ``request.charge``."""

    def middleware(request: HttpRequest) -> HttpResponse:
        # Under WSGI the values are in request.META, under ASGI in request.scope:
        # customer_of/charge_of read either.
        request.customer = customer_of(request)
        request.charge = charge_of(request)
        return get_response(request)

    return middleware


def render(request: HttpRequest, body: str) -> HttpResponse:
    root = request.META.get("SCRIPT_NAME", "")  # the mount prefix, e.g. "/app"
    customer = request.customer
    if customer is None:
        sign_in = f"{root}/smalltransfers/sign-in?{urlencode({'next': request.path})}"
        who = format_html('<p>Not signed in. <a href="{}">Sign in</a></p>', sign_in)
    else:
        who = format_html(
            '<p>Signed in as {} ({}).</p><form method="post" action="{}/smalltransfers/sign-out">'
            "<button>Sign out</button></form>",
            customer.name,
            customer.email,
            root,
        )
    return HttpResponse(
        format_html("<!doctype html><title>Django example</title>\n{}\n{}\n", who, body)
    )


def home(request: HttpRequest) -> HttpResponse:
    link = format_html('<a href="{}">Read the premium article</a>', reverse("paid"))
    return render(request, format_html("<p>{} (0.003 USD)</p>", link))


def paid(request: HttpRequest) -> HttpResponse:
    charge = request.charge  # only reached once paid for
    return render(
        request,
        format_html(
            "<h1>Premium article</h1><p>This visit cost {} micros.</p>", charge.amount_micros
        ),
    )
