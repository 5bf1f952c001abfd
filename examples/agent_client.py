"""A program that pays the demo shop's API from a terminal, after one approval in a browser.

Start the demo (``bash scripts/demo``), then, in another terminal::

    python -m examples.agent_client              # three paid quotes (0.0005 USD each)
    python -m examples.agent_client --count 1    # later runs: no approval, the token is kept
    python -m examples.agent_client --sign-out   # revoke the token on the shop

The first run prints "Open http://127.0.0.1:8000/smalltransfers/device/verify?...
and enter BCDF-GHJK": open it, press Continue, sign in with Small Transfers
(the emulator's Allow), then Allow the program. The token is kept in
``~/.config/st-middleware/tokens.json`` (readable by you only; ``--token-file``
picks another file) and every later quote is charged to that customer,
within their spending limit, until they sign the program out.

**In an AI agent.** ``SmallTransfersAuth`` is the auth of the HTTP client
the agent's tools use; the ``on_code`` callback relays the URL and code to
the human (in the chat, a notification...) instead of printing them::

    import httpx
    from st_middleware.client import DeviceAuthorization, DeviceFlowError, SmallTransfersAuth

    def tell_the_human(device: DeviceAuthorization) -> None:
        chat.send(f"To let me buy quotes on {device.site}, open "
                  f"{device.verification_uri_complete} and check the code {device.user_code}.")

    shop = httpx.Client(base_url="https://shop.example", timeout=30,
                        auth=SmallTransfersAuth(client_name="research agent",
                                                on_code=tell_the_human))

    def get_quote() -> dict:  # a tool: one quote, 0.0005 USD from the user's account
        try:
            answer = shop.get("/api/quote")
        except DeviceFlowError as refused:       # denied, lapsed: tell the model why
            return {"error": refused.error}
        if answer.status_code == 402:            # the spending limit is reached
            return {"error": "payment_refused", **answer.json()}
        return answer.json()

    agent = Agent(tools=[get_quote])             # whatever the framework calls it

The first tool call waits (``timeout``, at most the code's 10 minutes) until
the human approves; an async framework uses ``httpx.AsyncClient`` with the
same auth (``on_code`` may then be ``async``), which waits without blocking
the event loop. One approval covers every later call, and every process
sharing the token file.
"""

from __future__ import annotations

import argparse
import sys

import httpx

from st_middleware.client import DeviceFlowError, SmallTransfersAuth


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m examples.agent_client",
        description="Buy quotes from the demo shop's paid API, approved once in a browser.",
    )
    parser.add_argument("--shop", default="http://127.0.0.1:8000", help="the shop's URL")
    parser.add_argument("--count", type=int, default=3, help="how many quotes to buy")
    parser.add_argument("--token-file", help="where to keep the token (default: ~/.config/...)")
    parser.add_argument("--sign-out", action="store_true", help="revoke the token and forget it")
    args = parser.parse_args(argv)

    auth = SmallTransfersAuth(client_name="the agent_client example", token_file=args.token_file)
    with httpx.Client(base_url=args.shop, auth=auth, timeout=30) as shop:
        try:
            if args.sign_out:
                auth.sign_out(shop, "/smalltransfers/sign-out")
                print("Signed out: the shop no longer accepts this program's token.")
                return 0
            return buy_quotes(shop, args.count)
        except DeviceFlowError as refused:  # denied, lapsed, or not a site to trust
            print(f"Not allowed to pay: {refused}", file=sys.stderr)
        except httpx.TransportError as error:
            print(f"Cannot reach {args.shop} ({error}): is the demo running?", file=sys.stderr)
        return 1


def buy_quotes(shop: httpx.Client, count: int) -> int:
    """``count`` paid quotes, printed; the first one asks for the approval if need be."""
    for _ in range(count):
        answer = shop.get("/api/quote")
        if answer.status_code != 200:
            # 402: the customer's spending limit is reached (the problem+json says so).
            json_body = answer.headers.get("content-type", "").endswith("json")
            detail = answer.json().get("detail") if json_body else answer.reason_phrase
            print(f"{answer.status_code}: {detail}", file=sys.stderr)
            return 2
        quote = answer.json()
        print(f"{quote['quote']}  (paid {quote['cost_micros']} micros)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
