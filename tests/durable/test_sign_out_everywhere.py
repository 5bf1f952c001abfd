"""Sign-out on one server process holds on another sharing the store, at once.

Two real server processes on two ports (gunicorn + WSGI and uvicorn + ASGI:
two processes, two adapters) share one store: a SQLite file (one host) or
a Redis (stand-in for two hosts). A visitor signs in on the first; a copy of
the cookie works on the second; the visitor signs out on the first; the
copy presented to the second is then refused on a priced path (401, cookie
cleared) and anonymous on a free one.

How fast the second process sees it: a loop keeps requesting a free page
on the second process with the copy while the sign-out happens. Every
request that *started* after the sign-out answer must already be anonymous;
the figure printed is how long after the sign-out answer the first
anonymous answer came (the contract: at once on one host, within 1 s
across hosts).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest
from durable_support import (
    JSON,
    Servers,
    Timeline,
    clears_session,
    get,
    rows,
    signed_in_cookie,
)

from st_middleware.emulator import Emulator
from st_middleware.testing import new_customer

pytestmark = pytest.mark.slow

#: The contract's bound across hosts; on one host it must be "at once".
ACROSS_HOSTS = 1.0


def _watch(origin: str, cookie: str, stop: threading.Event, seen: Timeline) -> None:
    """Request ``/free`` with ``cookie`` back to back until ``stop``; who it was each time."""
    with httpx.Client(base_url=origin, headers={"Accept": JSON, "Cookie": cookie}) as client:
        while not stop.is_set():
            started = time.monotonic()
            customer = client.get("/free").json()["customer"]
            seen.entries.append((started, time.monotonic(), customer))


@pytest.mark.parametrize("engine", ["sqlite", "redis"])
def test_a_sign_out_on_one_process_holds_on_the_other_at_once(
    emulator: Emulator, tmp_path: Path, request: pytest.FixtureRequest, engine: str
) -> None:
    if engine == "sqlite":
        url = f"sqlite:///{tmp_path}/st.db"
    else:
        url = request.getfixturevalue("redis_server").url
    # Asked for after Redis, so torn down before it: the servers stop while it still runs.
    servers: Servers = request.getfixturevalue("servers")
    customer = new_customer(emulator)
    one, two = servers.start_many(("gunicorn", url, "one", {}), ("uvicorn", url, "two", {}))
    cookie = signed_in_cookie(one, emulator, customer)

    # The copy is a session on the other process too: it pays there.
    paid = get(two, "/paid", cookie)
    assert paid.status_code == 200
    assert paid.json()["customer"] == customer.id

    seen = Timeline()
    stop = threading.Event()
    watcher = threading.Thread(target=_watch, args=(two.origin, cookie, stop, seen))
    watcher.start()
    try:
        # Let the watcher show the session alive on the other process first.
        while not any(who == customer.id for _, _, who in seen):
            assert watcher.is_alive()
            time.sleep(0.01)
        with one.client() as client:
            out = client.post(
                "/smalltransfers/sign-out", headers={"Cookie": cookie}, follow_redirects=False
            )
        signed_out_at = time.monotonic()
        assert out.status_code == 303
        assert clears_session(out)
        # Keep watching a little: the requests that start now are the ones that count.
        while len([1 for start, _, _ in seen if start > signed_out_at]) < 20:
            assert watcher.is_alive()
            time.sleep(0.01)
    finally:
        stop.set()
        watcher.join(timeout=30)

    late = [who for start, _, who in seen if start > signed_out_at]
    assert late
    assert all(who is None for who in late), late
    first_refusal = min(end for _, end, who in seen if who is None)
    # Negative: the other process refused the copy before the sign-out's own
    # 303 had reached the visitor (the store is written before it is sent).
    lag = first_refusal - signed_out_at
    print(
        f"\nFIGURE revocation/{engine}: first anonymous answer on the other process "
        f"{lag * 1000:+.1f} ms from the sign-out answer; {len(late)} requests started "
        f"after it, all anonymous; {len(seen.entries)} watched in all"
    )
    assert lag < ACROSS_HOSTS

    # The copy, priced, on either process: 401 and the cookie cleared; nothing charged.
    for served in (two, one):
        refused = get(served, "/paid", cookie)
        assert refused.status_code == 401, refused.text
        assert clears_session(refused)
        assert get(served, "/free", cookie).json()["customer"] is None
    assert [(state, micros) for _, state, micros in rows(emulator, customer)] == [
        ("captured", 3000)
    ]
