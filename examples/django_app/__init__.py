"""Django: a free page and a priced page (3000 micros = 0.003 USD per visit), WSGI or ASGI.

Start the emulator first (``.venv/bin/python -m st_middleware.emulator --port 8100``),
then, from the repository root, serve the WSGI entry point:

    SMALL_TRANSFERS_BASE_URL=http://127.0.0.1:8100 SMALL_TRANSFERS_PUBLISHABLE_KEY=pk_test_emulator SMALL_TRANSFERS_SECRET_KEY=sk_test_emulator SMALL_TRANSFERS_SESSION_SECRET=$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(32))') .venv/bin/gunicorn --bind 127.0.0.1:8000 examples.django_app.wsgi

or the ASGI one:

    SMALL_TRANSFERS_BASE_URL=http://127.0.0.1:8100 SMALL_TRANSFERS_PUBLISHABLE_KEY=pk_test_emulator SMALL_TRANSFERS_SECRET_KEY=sk_test_emulator SMALL_TRANSFERS_SESSION_SECRET=$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(32))') .venv/bin/uvicorn examples.django_app.asgi:application --port 8000

and open http://127.0.0.1:8000/. The middleware wraps Django in ``wsgi.py`` /
``asgi.py``; a tiny Django middleware (``views.small_transfers_customer``) puts
the customer on ``request.customer`` for the views.
"""  # noqa: E501
