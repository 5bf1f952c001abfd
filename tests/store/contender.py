"""One contender process in the cross-process races of test_concurrency.py.

    python tests/store/contender.py URL MODE COUNT

Opens the store, prints ``ready``, waits for a line on stdin (so that every
contender starts at once), then races and prints a JSON list:

- ``claim``: claims (now=1e6, lease 600 s, 3 at a time) until nothing is
  left, pausing 0.2 ms between claims as a worker sending its captures
  would (without it, SQLite's busy handler lets whichever process got the
  lock first take everything while the other sleeps), and prints the ids
  it got.
- ``add``: ``add("race:<i>")`` for i < COUNT, prints the keys it added.
- ``take``: ``take("race:<i>")`` for i < COUNT, prints the keys it got.
"""

from __future__ import annotations

import json
import os
import sys
import time

from st_middleware._store import open_store


def main() -> None:
    url, mode, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = open_store(url).sync
    print("ready", flush=True)
    sys.stdin.readline()
    won: list[str] = []
    if mode == "claim":
        while batch := store.claim(1e6, 600.0, 3):
            won.extend(entry.id for entry in batch)
            time.sleep(0.0002)
    elif mode == "add":
        mine = str(os.getpid()).encode()
        won = [f"race:{i}" for i in range(count) if store.add(f"race:{i}", mine, 60)]
    elif mode == "take":
        won = [f"race:{i}" for i in range(count) if store.take(f"race:{i}") is not None]
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    store.close()
    print(json.dumps(won), flush=True)


if __name__ == "__main__":
    main()
