"""Flask: a free page and a priced page (3000 micros = 0.003 USD per visit).

Start the emulator first (``.venv/bin/python -m st_middleware.emulator --port 8100``),
then, from the repository root:

    SMALL_TRANSFERS_BASE_URL=http://127.0.0.1:8100 SMALL_TRANSFERS_PUBLISHABLE_KEY=pk_test_emulator SMALL_TRANSFERS_SECRET_KEY=sk_test_emulator SMALL_TRANSFERS_SESSION_SECRET=$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(32))') .venv/bin/waitress-serve --listen=127.0.0.1:8000 examples.flask_app:app

and open http://127.0.0.1:8000/ (with the same variables, ``.venv/bin/flask --app
examples.flask_app run --port 8000`` serves it too).
"""  # noqa: E501

from __future__ import annotations

from flask import Flask, render_template_string, request

from st_middleware import Customer, SmallTransfersWSGI, customer_of

app = Flask(__name__)


def current_customer() -> Customer | None:
    """The signed-in Small Transfers customer, or None (says so if the middleware is missing)."""
    return customer_of(request)


PAGE = """<!doctype html><title>Flask example</title>
{% if customer %}<p>Signed in as {{ customer.name }} ({{ customer.email }}).</p>
<form method="post" action="{{ root }}/smalltransfers/sign-out"><button>Sign out</button></form>
{% else %}<p>Not signed in.
<a href="{{ root }}/smalltransfers/sign-in?next={{ (root ~ request.path) | urlencode }}">Sign in</a>
</p>{% endif %}
{% if charge %}<h1>Premium article</h1><p>This visit cost {{ charge.amount_micros }} micros.</p>
{% else %}<p><a href="{{ root }}/paid">Read the premium article</a> (0.003 USD a visit)</p>
{% endif %}"""


def render(charge: object = None) -> str:
    return render_template_string(
        PAGE, customer=current_customer(), charge=charge, root=request.script_root
    )


@app.get("/")
def home() -> str:
    return render()


@app.get("/paid")
def paid() -> str:
    # Only reached once the visit has been paid for.
    return render(charge=request.environ["smalltransfers.charge"])


# Keys, session secret and base URL come from the SMALL_TRANSFERS_* environment variables.
app.wsgi_app = SmallTransfersWSGI(app.wsgi_app, pricing={"/paid": 3000})  # type: ignore[method-assign]
