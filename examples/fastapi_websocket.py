"""FastAPI websockets: a paid echo (1000 micros = 0.001 USD per connection), a metered one, a free one.

Start the emulator first (``.venv/bin/python -m st_middleware.emulator --port 8100``),
then, from the repository root:

    SMALL_TRANSFERS_BASE_URL=http://127.0.0.1:8100 SMALL_TRANSFERS_PUBLISHABLE_KEY=pk_test_emulator SMALL_TRANSFERS_SECRET_KEY=sk_test_emulator SMALL_TRANSFERS_SESSION_SECRET=$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(32))') .venv/bin/uvicorn examples.fastapi_websocket:app --port 8000

and open http://127.0.0.1:8000/ (hypercorn and daphne serve it the same way).

A websocket is priced like any path, by its handshake:

- ``/paid/ws`` without a session is refused before the handler runs: a 401
  where the server supports the ``websocket.http.response`` extension
  (uvicorn, hypercorn), else a 403 (daphne). Signed in, the visitor is
  charged once per connection, before the handler accepts it; the messages
  on that connection are free.
- ``/metered/ws`` authorizes up to 0.01 USD at the handshake and captures
  0.001 USD per message answered, once the socket has closed.
- ``/free/ws`` costs nothing and still knows who is signed in.
"""  # noqa: E501

from __future__ import annotations

from html import escape

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse

from st_middleware import Price, SmallTransfersASGI, charge_of, customer_of

PER_MESSAGE = 1000  # micros, on /metered/ws

api = FastAPI()


@api.get("/", response_class=HTMLResponse)
def home(request: Request) -> HTMLResponse:
    root = escape(request.scope.get("root_path", ""))  # the mount prefix, e.g. "/app"
    customer = customer_of(request)
    if customer is None:
        sign_in = f"{root}/smalltransfers/sign-in?next={root}/"
        who = f'<p>Not signed in. <a href="{sign_in}">Sign in</a></p>'
    else:
        who = (
            f"<p>Signed in as {escape(customer.name)}.</p>"
            f'<form method="post" action="{root}/smalltransfers/sign-out">'
            "<button>Sign out</button></form>"
        )
    return HTMLResponse(_PAGE.replace("{root}", root).replace("{who}", who))


@api.websocket("/paid/ws")
async def paid(websocket: WebSocket) -> None:
    # Only reached once the handshake was paid for: the customer and the charge are set.
    customer, charge = customer_of(websocket), charge_of(websocket)
    assert customer is not None
    assert charge is not None
    await websocket.accept()
    await websocket.send_text(
        f"Hello {customer.name}: this connection cost {charge.amount_micros} micros."
    )
    try:
        while True:
            await websocket.send_text(f"echo: {await websocket.receive_text()}")
    except WebSocketDisconnect:
        pass  # the visitor left: the connection was paid for at the handshake


@api.websocket("/metered/ws")
async def metered(websocket: WebSocket) -> None:
    charge = charge_of(websocket)
    assert charge is not None
    await websocket.accept()
    answered = 0
    # Set from the start and as we go: whenever the socket ends, this is what
    # is captured (left unset, the whole authorization would be).
    charge.capture_micros = 0
    try:
        # Stop before the authorization runs out: more would be clamped to it.
        while (answered + 1) * PER_MESSAGE <= charge.authorized_micros:
            text = await websocket.receive_text()
            answered += 1
            charge.capture_micros = answered * PER_MESSAGE
            await websocket.send_text(f"{text.upper()} ({answered * PER_MESSAGE} micros so far)")
        await websocket.close(reason="authorization used up")
    except WebSocketDisconnect:
        pass  # the visitor left: what was answered is captured


@api.websocket("/free/ws")
async def free(websocket: WebSocket) -> None:
    customer = customer_of(websocket)  # set on free paths too: None when nobody is signed in
    await websocket.accept()
    name = customer.name if customer is not None else "visitor"
    await websocket.send_text(f"Hello {name}, this one is free.")
    await websocket.close()


# Keys, session secret and base URL come from the SMALL_TRANSFERS_* environment variables.
app = SmallTransfersASGI(
    api,
    pricing={
        "/paid/*": 1000,
        "/metered/*": Price(10 * PER_MESSAGE, mode="authorize-capture"),
    },
)

_PAGE = """<!doctype html><title>FastAPI websocket example</title>
{who}
<p><button id="paid">Connect to /paid/ws (0.001 USD)</button>
<button id="metered">Connect to /metered/ws (0.001 USD a message)</button>
<button id="free">Connect to /free/ws</button></p>
<p><input id="text" value="hello"> <button id="send">Send</button></p>
<pre id="log"></pre>
<script>
let socket = null;
const log = (line) => { document.getElementById("log").textContent += line + "\\n"; };
for (const name of ["paid", "metered", "free"]) {
  document.getElementById(name).onclick = () => {
    if (socket) socket.close();
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(`${scheme}://${location.host}{root}/${name}/ws`);
    socket.onopen = () => log(`connected to /${name}/ws`);
    socket.onmessage = (event) => log(event.data);
    // A refused handshake (not signed in) shows up as a close before any open.
    socket.onclose = (event) => log(`closed (${event.code})`);
  };
}
document.getElementById("send").onclick = () => {
  if (socket) socket.send(document.getElementById("text").value);
};
</script>
"""
