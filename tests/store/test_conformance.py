"""One suite, every backend (memory, SQLite, a real Redis), both sides (sync and async).

The ``store`` fixture (conftest.py) is a fresh store behind the async
interface; for the sync side it wraps the ``Store`` so that each call runs
the sync method directly. TTLs are short (0.2 s) and real: nothing is mocked.
"""

from __future__ import annotations

import os

import anyio
import pytest

from st_middleware._store import (
    AsyncStore,
    CaptureEntry,
    StorePair,
    StoreUnavailable,
)

pytestmark = pytest.mark.anyio

SHORT = 0.2  # seconds: a TTL that runs out during the test
AFTER_SHORT = 0.35  # enough sleep for it to have run out, with slack for a busy machine
LONG = 60.0


def entry(
    id: str,
    due_at: float = 100.0,
    *,
    created_at: float = 10.0,
    payload: bytes = b"sealed",
    state: str = "pending",
    leased_until: float = 0.0,
    last_error: str | None = None,
    attempts: int = 0,
) -> CaptureEntry:
    return CaptureEntry(
        id=id,
        payload=payload,
        due_at=due_at,
        attempts=attempts,
        created_at=created_at,
        last_error=last_error,
        state=state,  # type: ignore[arg-type]
        leased_until=leased_until,
    )


# -- key/value ---------------------------------------------------------------------------


async def test_put_get_replace_delete(store: AsyncStore) -> None:
    await store.put("revoked:abc", b"1", LONG)
    assert await store.get("revoked:abc") == b"1"
    await store.put("revoked:abc", b"2", LONG)
    assert await store.get("revoked:abc") == b"2"
    await store.delete("revoked:abc")
    assert await store.get("revoked:abc") is None


async def test_absent_keys_read_as_none_and_delete_quietly(store: AsyncStore) -> None:
    assert await store.get("nothing:here") is None
    assert await store.take("nothing:here") is None
    await store.delete("nothing:here")


async def test_add_sets_only_an_absent_key(store: AsyncStore) -> None:
    assert await store.add("device:1", b"first", LONG) is True
    assert await store.add("device:1", b"second", LONG) is False
    assert await store.get("device:1") == b"first"


async def test_take_hands_a_value_out_once(store: AsyncStore) -> None:
    await store.put("token:1", b"sealed-token", LONG)
    assert await store.take("token:1") == b"sealed-token"
    assert await store.take("token:1") is None
    assert await store.get("token:1") is None


async def test_incr_counts_from_one_and_reads_as_decimal(store: AsyncStore) -> None:
    assert [await store.incr("guesses:d1", LONG) for _ in range(3)] == [1, 2, 3]
    assert await store.get("guesses:d1") == b"3"
    assert await store.incr("guesses:d2", LONG) == 1


async def test_incr_keeps_the_first_expiry(store: AsyncStore) -> None:
    assert await store.incr("guesses:d1", 0.3) == 1
    await anyio.sleep(0.15)
    assert await store.incr("guesses:d1", 0.3) == 2  # must not push the expiry out
    await anyio.sleep(0.25)  # 0.4 s after the first increment
    assert await store.get("guesses:d1") is None
    assert await store.incr("guesses:d1", 0.3) == 1


async def test_incr_on_a_value_that_is_not_a_counter_is_a_value_error(store: AsyncStore) -> None:
    await store.put("k", b"not a number", LONG)
    with pytest.raises(ValueError, match="not a counter"):
        await store.incr("k", LONG)
    assert await store.get("k") == b"not a number"


async def test_expired_entries_are_never_returned(store: AsyncStore) -> None:
    await store.put("put", b"v", SHORT)
    assert await store.add("add", b"v", SHORT) is True
    await store.put("take", b"v", SHORT)
    await store.incr("incr", SHORT)
    assert await store.get("put") == b"v"
    await anyio.sleep(AFTER_SHORT)
    assert await store.get("put") is None
    assert await store.get("add") is None
    assert await store.take("take") is None
    assert await store.add("add", b"again", LONG) is True  # an expired key counts as absent
    assert await store.get("add") == b"again"
    assert await store.incr("incr", LONG) == 1


async def test_large_binary_values_round_trip(store: AsyncStore) -> None:
    value = bytes(range(256)) * 256  # 64 KiB, every byte value, NULs included
    assert len(value) == 64 * 1024
    await store.put("big", value, LONG)
    assert await store.get("big") == value
    assert await store.take("big") == value
    random = os.urandom(64 * 1024)
    await store.enqueue(entry("big:capture", payload=random), LONG)
    assert [e.payload for e in await store.captures()] == [random]


@pytest.mark.parametrize(
    "key",
    ["", "caf\u00e9", "with space", "line\nbreak", "tab\there", "nul\x00", "k" * 513],
)
async def test_keys_must_be_short_printable_ascii(store: AsyncStore, key: str) -> None:
    with pytest.raises(ValueError, match="printable ASCII"):
        await store.put(key, b"v", LONG)
    with pytest.raises(ValueError, match="printable ASCII"):
        await store.get(key)
    with pytest.raises(ValueError, match="printable ASCII"):
        await store.finish(key)


async def test_the_longest_key_and_punctuation_are_fine(store: AsyncStore) -> None:
    for key in ["k" * 512, "revoked:a/b+c=d_e-f.g~h*?[]{}%", "device:ABCD-EFGH"]:
        await store.put(key, key.encode(), LONG)
        assert await store.get(key) == key.encode()


async def test_arguments_no_backend_accepts_are_refused(store: AsyncStore) -> None:
    for ttl in (0, -1, float("nan"), float("inf"), 11 * 365 * 24 * 3600.0):
        with pytest.raises(ValueError, match="ttl"):
            await store.put("k", b"v", ttl)
    with pytest.raises(TypeError, match="bytes"):
        await store.put("k", "text", LONG)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="limit"):
        await store.claim(0.0, 10.0, -1)
    with pytest.raises(ValueError, match="lease"):
        await store.claim(0.0, 0.0, 1)
    with pytest.raises(ValueError, match="now"):
        await store.claim(float("nan"), 10.0, 1)
    with pytest.raises(ValueError, match="state"):
        entry("x", state="done")
    assert await store.get("k") is None


# -- the capture outbox ----------------------------------------------------------------


async def test_enqueue_then_captures_lists_every_field(store: AsyncStore) -> None:
    first = entry("a:capture", 100.0, created_at=1.5, last_error="timeout \u2014 retried")
    second = entry("b:capture", 50.0, created_at=2.5, attempts=3)
    await store.enqueue(second, LONG)
    await store.enqueue(first, LONG)
    assert await store.captures() == [first, second]  # oldest created first


async def test_claim_takes_due_entries_oldest_due_first_up_to_the_limit(
    store: AsyncStore,
) -> None:
    for id, due in [("e", 105.0), ("c", 101.0), ("b", 101.0), ("a", 103.0), ("f", 500.0)]:
        await store.enqueue(entry(id, due), LONG)
    assert await store.claim(100.0, 30.0, 10) == []
    first = await store.claim(104.0, 30.0, 2)
    assert [e.id for e in first] == ["b", "c"]  # same due time: by id
    assert all(e.leased_until == 134.0 for e in first)
    rest = await store.claim(104.0, 30.0, 10)
    assert [e.id for e in rest] == ["a"]
    assert await store.claim(104.0, 30.0, 0) == []


async def test_a_claimed_entry_is_not_claimed_again_before_its_lease_ends(
    store: AsyncStore,
) -> None:
    await store.enqueue(entry("a", 100.0, payload=b"p"), LONG)
    [claimed] = await store.claim(100.0, 30.0, 10)
    assert claimed == entry("a", 100.0, payload=b"p", leased_until=130.0)
    assert await store.claim(110.0, 30.0, 10) == []
    assert await store.claim(129.999, 30.0, 10) == []
    # The claimer crashed: when the lease ends, another claimer gets the entry.
    [again] = await store.claim(130.0, 30.0, 10)
    assert again.id == "a"
    assert again.leased_until == 160.0
    assert [e.leased_until for e in await store.captures()] == [160.0]


async def test_reschedule_releases_the_lease_and_sets_the_next_attempt(
    store: AsyncStore,
) -> None:
    await store.enqueue(entry("a", 100.0), LONG)
    await store.claim(100.0, 30.0, 10)
    await store.reschedule("a", 102.0, 1, "connect timeout")
    [listed] = await store.captures()
    assert (listed.due_at, listed.attempts, listed.last_error, listed.leased_until) == (
        102.0,
        1,
        "connect timeout",
        0.0,
    )
    assert await store.claim(101.0, 30.0, 10) == []  # released, but not due yet
    [claimed] = await store.claim(102.0, 30.0, 10)
    assert claimed.attempts == 1
    await store.reschedule("a", 103.0, 2, None)
    assert [e.last_error for e in await store.captures()] == [None]


async def test_fail_is_terminal_and_kept_for_its_ttl(store: AsyncStore) -> None:
    await store.enqueue(entry("a", 100.0), LONG)
    await store.claim(100.0, 30.0, 10)
    await store.fail("a", 4, "charge_expired", SHORT)
    [failed] = await store.captures()
    assert (failed.state, failed.attempts, failed.last_error, failed.leased_until) == (
        "failed",
        4,
        "charge_expired",
        0.0,
    )
    assert await store.claim(1e9, 30.0, 10) == []
    await store.reschedule("a", 100.0, 5, "again")  # a failed entry stays failed
    assert [e.state for e in await store.captures()] == ["failed"]
    await anyio.sleep(AFTER_SHORT)
    assert await store.captures() == []


async def test_finish_removes_the_entry(store: AsyncStore) -> None:
    await store.enqueue(entry("a", 100.0), LONG)
    await store.enqueue(entry("b", 100.0), LONG)
    [claimed, _] = await store.claim(100.0, 30.0, 10)
    await store.finish(claimed.id)
    assert [e.id for e in await store.captures()] == ["b"]
    assert await store.claim(110.0, 30.0, 10) == []  # b is still leased


async def test_enqueue_replaces_the_entry_with_the_same_id(store: AsyncStore) -> None:
    await store.enqueue(entry("a", 100.0, payload=b"old"), LONG)
    await store.claim(100.0, 30.0, 10)
    fresh = entry("a", 200.0, payload=b"new", attempts=1)
    await store.enqueue(fresh, LONG)
    assert await store.captures() == [fresh]
    assert await store.claim(150.0, 30.0, 10) == []
    assert [e.payload for e in await store.claim(200.0, 30.0, 10)] == [b"new"]


async def test_an_entry_enqueued_with_a_lease_waits_for_it(store: AsyncStore) -> None:
    await store.enqueue(entry("a", 100.0, leased_until=150.0), LONG)
    assert await store.claim(120.0, 30.0, 10) == []
    assert [e.id for e in await store.claim(150.0, 30.0, 10)] == ["a"]


async def test_outbox_entries_expire_with_their_ttl(store: AsyncStore) -> None:
    await store.enqueue(entry("short", 100.0), SHORT)
    await store.enqueue(entry("long", 100.0), LONG)
    await anyio.sleep(AFTER_SHORT)
    assert [e.id for e in await store.captures()] == ["long"]
    assert [e.id for e in await store.claim(100.0, 30.0, 10)] == ["long"]
    await store.reschedule("short", 1.0, 1, None)  # gone: nothing comes back
    await store.fail("short", 1, "x", LONG)
    assert [e.id for e in await store.captures()] == ["long"]


async def test_operations_on_unknown_ids_do_nothing(store: AsyncStore) -> None:
    await store.reschedule("nope", 1.0, 1, "x")
    await store.fail("nope", 1, "x", LONG)
    await store.finish("nope")
    assert await store.captures() == []
    assert await store.claim(1e9, 30.0, 10) == []


# -- the two sides, closing ------------------------------------------------------------


async def test_sync_and_async_sides_share_the_data(pair: StorePair) -> None:
    pair.sync.put("revoked:s1", b"1", LONG)
    assert await pair.aio.get("revoked:s1") == b"1"
    await pair.aio.enqueue(entry("a", 100.0), LONG)
    assert [e.id for e in pair.sync.claim(100.0, 30.0, 10)] == ["a"]
    assert await pair.aio.claim(100.0, 30.0, 10) == []


async def test_aclose_releases_this_loop_and_the_store_stays_usable(pair: StorePair) -> None:
    await pair.aio.put("k", b"v", LONG)
    await pair.aio.aclose()
    await pair.aio.aclose()
    assert await pair.aio.get("k") == b"v"


async def test_a_closed_store_is_unavailable(pair: StorePair) -> None:
    pair.sync.put("k", b"v", LONG)
    pair.sync.close()
    pair.sync.close()  # idempotent
    sync = pair.sync
    calls = [
        lambda: sync.get("k"),
        lambda: sync.put("k", b"v", LONG),
        lambda: sync.add("k", b"v", LONG),
        lambda: sync.take("k"),
        lambda: sync.delete("k"),
        lambda: sync.incr("n", LONG),
        lambda: sync.enqueue(entry("a"), LONG),
        lambda: sync.claim(1.0, 1.0, 1),
        lambda: sync.reschedule("a", 1.0, 1, None),
        lambda: sync.fail("a", 1, "x", LONG),
        lambda: sync.finish("a"),
        sync.captures,
    ]
    for call in calls:
        with pytest.raises(StoreUnavailable, match="closed"):
            call()
