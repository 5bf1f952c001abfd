"""Run every scenario of the benchmark in one go and print ratios side by side.

Layout of the machine during a run (2 cores):

- core 0: every server under test (one uvicorn process, one gunicorn worker
  each). Only the one being loaded does any work; the others sit idle.
- core 1: the load generator (``wrk``, one thread), the minimal charge
  endpoint (:mod:`bench.chargeserver`) and this script.

Throughput and server CPU per request are measured in interleaved rounds: in
every round each (scenario, variant) pair runs once, in an order that flips
every round, and each ratio is taken inside one round, then the median over
rounds is reported. CPU per request is the server process's utime+stime delta
(``/proc/PID/stat``) over the requests ``wrk`` completed.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import common

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
SERVER_CORE = "0"
#: Seconds between two TTFB requests: more than a capture takes on loopback.
TTFB_PAUSE = 0.003
CLIENT_CORE = "1"


# -- processes --------------------------------------------------------------------------


_TAKEN: set[int] = set()


def free_port() -> int:
    """A free port below the ephemeral range, so no outgoing connection can take it meanwhile."""
    low, _ = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    pick = random.Random()
    for _ in range(1000):
        port = pick.randrange(max(1024, low - 12000), low)
        if port in _TAKEN:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _TAKEN.add(port)
        return port
    raise RuntimeError("no free port")


def cpu_ticks(pid: int) -> int:
    """utime + stime of ``pid`` (all its threads), in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def core_busy_ticks(core: str) -> int:
    """Ticks core ``core`` spent running tasks (user, nice, system, steal; not irq)."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{core} "):
                user, nice, system, _idle, _iowait, _irq, _softirq, steal = map(
                    int, line.split()[1:9]
                )
                return user + nice + system + steal
    raise RuntimeError(f"no cpu{core} in /proc/stat")


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


@dataclass
class Server:
    adapter: str  # "wsgi" | "asgi"
    #: "bare" | "wrapped" | "floor" | "candidate" | "t-NAME" (a transport) | "s-NAME" (a store)
    variant: str
    port: int
    charge_port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    pid: int = 0  # the process that serves (gunicorn's worker, uvicorn itself)
    tag: str = ""
    #: gunicorn threads for this server (None: the run's --gunicorn-threads).
    threads: int | None = None
    #: More environment for the server (``BENCH_STORE`` of an ``s-NAME`` variant).
    env: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.adapter}/{self.variant}{self.tag}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self, gunicorn_threads: int) -> list[str]:
        py = sys.executable
        if self.threads is not None:
            gunicorn_threads = self.threads
        if self.adapter == "wsgi":
            workers = (
                ["--worker-class", "gthread", "--threads", str(gunicorn_threads)]
                if gunicorn_threads > 0
                else ["--worker-class", "sync"]
            )
            return [
                py, "-m", "gunicorn", "bench.apps:make_wsgi()",
                "--bind", f"127.0.0.1:{self.port}", "--workers", "1", *workers,
                "--backlog", "2048", "--keep-alive", "5", "--log-level", "warning",
                "--worker-tmp-dir", "/dev/shm",
            ]  # fmt: skip
        return [
            py, "-m", "uvicorn", "--factory", "bench.apps:make_asgi",
            "--host", "127.0.0.1", "--port", str(self.port), "--backlog", "2048",
            "--no-access-log", "--log-level", "warning", "--lifespan", "on",
        ]  # fmt: skip

    def start(
        self,
        gunicorn_threads: int,
        candidate: Path | None = None,
        candidate_options: str | None = None,
    ) -> None:
        env = {
            **os.environ,
            "BENCH_VARIANT": self.variant,
            "BENCH_CHARGE_URL": f"http://127.0.0.1:{self.charge_port}",
            "PYTHONUNBUFFERED": "1",
            **self.env,
        }
        if "candidate" in self.variant:
            if candidate is not None:
                env["PYTHONPATH"] = os.pathsep.join([str(candidate), str(ROOT)])
            env["BENCH_OPTIONS"] = candidate_options or ""
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                ["taskset", "-c", SERVER_CORE, *self.command(gunicorn_threads)],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, deadline: float) -> None:
        assert self.proc is not None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log.read_text()[-2000:]}")
            try:
                status, _ = http_get(self.port, "/")
            except OSError:
                time.sleep(0.05)
                continue
            if status != 200:
                raise RuntimeError(f"{self.name} answered {status} on /")
            if self.adapter == "wsgi":
                workers = children(self.proc.pid)
                if len(workers) != 1:
                    time.sleep(0.05)
                    continue
                self.pid = workers[0]
            else:
                self.pid = self.proc.pid
            return
        raise RuntimeError(f"{self.name} did not start:\n{self.log.read_text()[-2000:]}")

    def loaded_from(self) -> str:
        """Where the server's st_middleware came from (its app factory logs it)."""
        found = re.search(r"bench app: \S+ with (\S+)", self.log.read_text())
        if found is None:
            raise RuntimeError(f"{self.name}: no 'bench app:' line in {self.log}")
        return found.group(1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def http_get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path, headers=headers or {})
        reply = connection.getresponse()
        return reply.status, reply.read()
    finally:
        connection.close()


class ChargeEndpoint:
    def __init__(self, ports: list[int], log: Path) -> None:
        self.ports = ports
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = ["taskset", "-c", CLIENT_CORE, sys.executable, "-m", "bench.chargeserver"]
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [*command, *map(str, self.ports)],
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"charge endpoint exited:\n{self.log.read_text()}")
            if "ready" in self.log.read_text():
                return
            time.sleep(0.05)
        raise RuntimeError("charge endpoint did not start")

    def stats(self, port: int) -> dict[str, int]:
        _, body = http_get(self.ports[0], "/stats")
        data: dict[str, dict[str, int]] = json.loads(body)
        return data[str(port)]

    def reset_peak(self) -> None:
        """Forget the most charges seen in flight at once (``max_pending``)."""
        http_get(self.ports[0], "/peak-reset")

    def set_latency(self, ms: float) -> None:
        """Every charge reply from now on waits ``ms`` (a remote Small Transfers)."""
        status, _ = http_get(self.ports[0], f"/latency?ms={ms:g}")
        if status != 200:
            raise RuntimeError(f"the charge endpoint refused latency {ms}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)


# -- the load generator -----------------------------------------------------------------


@dataclass
class WrkResult:
    requests: int
    seconds: float
    non_2xx: int
    socket_errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


_WRK_DONE = re.compile(r"(\d+) requests in ([\d.]+)(us|ms|s|m)")
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def wrk(url: str, seconds: float, connections: int, script: Path | None) -> WrkResult:
    command = [
        "taskset", "-c", CLIENT_CORE, "wrk", "-t1", f"-c{connections}",
        f"-d{max(1, round(seconds))}s", "--timeout", "10s",
    ]  # fmt: skip
    if seconds < 1:
        # wrk takes whole seconds; a sub-second run is a warm-up only.
        command[-3] = "-d1s"
    if script is not None:
        command += ["-s", str(script)]
    out = subprocess.run(
        [*command, url], capture_output=True, text=True, check=True, timeout=seconds + 60
    ).stdout
    done = _WRK_DONE.search(out)
    if done is None:
        raise RuntimeError(f"cannot read wrk output:\n{out}")
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return WrkResult(
        requests=int(done.group(1)),
        seconds=float(done.group(2)) * _UNITS[done.group(3)],
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(g) for g in errors.groups()) if errors else 0,
    )


def lua_headers(path: Path, headers: dict[str, str]) -> Path | None:
    if not headers:
        return None
    lines = [f'wrk.headers["{name}"] = "{value}"' for name, value in headers.items()]
    path.write_text("\n".join([*lines, 'wrk.headers["Accept"] = "*/*"', ""]))
    return path


def lua_mix(path: Path, cookie: str, bad_cookie: str, stop_after: int = 0) -> Path:
    """Every path of the middleware in turn, for the long run.

    Out of 10 requests: 2 free anonymous, 2 free signed in, 3 reading the
    customer, 1 with a tampered cookie (cleared), 1 charged up front, 1
    authorize-capture: a mix where the charges are a fifth of the traffic.
    """
    stop = (
        f"local done = 0\nresponse = function(status, headers, body)\n"
        f"  done = done + 1\n  if done >= {stop_after} then wrk.thread:stop() end\nend\n"
        if stop_after
        else ""
    )
    path.write_text(
        f"""
local reqs = {{}}
local i = 0
init = function(args)
  local good = {{["Cookie"] = "{cookie}", ["Accept"] = "*/*"}}
  local bad = {{["Cookie"] = "{bad_cookie}", ["Accept"] = "*/*"}}
  local anonymous = {{["Accept"] = "*/*"}}
  reqs[1] = wrk.format("GET", "/", anonymous)
  reqs[2] = wrk.format("GET", "/me", good)
  reqs[3] = wrk.format("GET", "/paid", good)
  reqs[4] = wrk.format("GET", "/", good)
  reqs[5] = wrk.format("GET", "/me", bad)
  reqs[6] = wrk.format("GET", "/", anonymous)
  reqs[7] = wrk.format("GET", "/me", good)
  reqs[8] = wrk.format("GET", "/ac", good)
  reqs[9] = wrk.format("GET", "/", good)
  reqs[10] = wrk.format("GET", "/me", good)
end
request = function()
  i = i % #reqs + 1
  return reqs[i]
end
{stop}"""
    )
    return path


# -- measurements ----------------------------------------------------------------------


@dataclass
class Run:
    rps: float
    cpu_us: float  # server CPU per request, microseconds
    util: float  # server CPU seconds / wall seconds
    requests: int
    charge_connections: int
    #: Share of core 0 used by other processes during the run (a shared machine's noise).
    foreign: float = 0.0


#: A variant ending in ``+bearer`` is that server, sent a bearer token instead of the cookie.
BEARER = "+bearer"


@dataclass
class Case:
    key: str
    scenario: str
    adapter: str
    path: str
    #: The credential sent: "cookie", or None (anonymous); "+bearer" variants send a token.
    credential: str | None
    ref: str
    variants: list[str]
    #: The least CPU/request ratio to the reference, per judged variant.
    targets: dict[str, float] = field(default_factory=dict)
    runs: dict[str, list[Run]] = field(default_factory=dict)

    def label(self) -> str:
        return f"{self.key} {self.adapter.upper()} {self.path}"

    def target(self, variant: str) -> tuple[str, str | None]:
        """The server a variant runs on, and the credential it is sent."""
        if variant.endswith(BEARER):
            return f"{self.adapter}/{variant.removesuffix(BEARER)}", "bearer"
        return f"{self.adapter}/{variant}", self.credential


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="st-bench-"))
        self.servers: dict[str, Server] = {}
        self.cookie = common.cookie_header()
        self.bad_cookie = common.bad_cookie_header()
        self.bearer = common.bearer_header()
        self.redis: Any = None
        self.charge: ChargeEndpoint | None = None
        self.results: dict[str, Any] = {}
        self.started = time.monotonic()

    # -- set-up ---------------------------------------------------------------------

    def add(self, adapter: str, variant: str, tag: str = "", threads: int | None = None) -> Server:
        server = Server(
            adapter,
            variant,
            free_port(),
            free_port(),
            self.tmp / f"{adapter}-{variant}{tag}.log",
            tag=tag,
            threads=threads,
        )
        self.servers[server.name] = server
        return server

    def start(self) -> None:
        from .apps import TRANSPORTS

        candidate = self.args.candidate is not None or bool(self.args.candidate_options)
        only = self.args.only
        for adapter in ("wsgi", "asgi"):
            variants = ["bare", "wrapped", "floor"]
            if candidate:
                variants.append("candidate")
            if self.args.fast and "1" in only:
                for name in TRANSPORTS[adapter]:
                    if name == "aiohttp" and not _has("httpx_aiohttp"):
                        print("  (httpx-aiohttp not installed: no t-aiohttp line)")
                        continue
                    variants.append(f"t-{name}")
            if adapter == "asgi" and "1" in only and _has("starlette"):
                variants += ["starlette-bare", "starlette-wrapped"]
                if candidate:
                    variants.append("starlette-candidate")
            for variant in variants:
                self.add(adapter, variant)
            if "5" in only:
                self.add(adapter, "wrapped", tag="-mem")
            if "8" in only:
                for name, url in self.stores(adapter).items():
                    self.add(adapter, f"s-{name}").env["BENCH_STORE"] = url
                if _has("prometheus_client"):
                    self.add(adapter, "o-prometheus")
            if "7" in only and adapter == "wsgi":
                # The latency scenario: as many threads as wrk has connections.
                threads = self.args.latency_connections
                for variant in ["wrapped", "candidate"] if candidate else ["wrapped"]:
                    self.add(adapter, variant, tag=f"-x{threads}", threads=threads)
        self.charge = ChargeEndpoint(
            [s.charge_port for s in self.servers.values()], self.tmp / "charge.log"
        )
        self.charge.start()
        for server in self.servers.values():
            server.start(
                self.args.gunicorn_threads, self.args.candidate, self.args.candidate_options
            )
        deadline = time.monotonic() + 60
        for server in self.servers.values():
            server.wait_ready(deadline)
        self.check_answers()
        if self.args.candidate is not None:
            for server in self.servers.values():
                if "candidate" not in server.variant:
                    continue
                where = Path(server.loaded_from()).resolve()
                if not where.is_relative_to(self.args.candidate.resolve()):
                    raise RuntimeError(f"the candidate loaded st_middleware from {where}")
                print(f"  candidate ({server.name}): st_middleware from {where.parent}")

    def stores(self, adapter: str) -> dict[str, str]:
        """The stores of scenario 8 besides ``wrapped``'s default ``memory://``: a URL each.

        SQLite: a file per server in the run's temp dir. Redis: one throwaway
        ``redis-server`` on loopback (the store tests' own), when installed.
        """
        stores = {"sqlite": f"sqlite:///{self.tmp / f'store-{adapter}.db'}"}
        if self.redis is None and _has("redis"):
            self.redis = start_redis(self.tmp)
        if self.redis is not None:
            stores["redis"] = self.redis.url
        return stores

    def check_answers(self) -> None:
        """Every variant answers every path, and the signed-in ones know the customer."""
        for server in self.servers.values():
            for path in ("/", "/me", "/paid", "/stream", "/ac"):
                status, body = http_get(server.port, path, {"Cookie": self.cookie})
                if status != 200:
                    raise RuntimeError(f"{server.name} {path}: {status} {body[:200]!r}")
                if path == "/me" and not server.variant.endswith("bare") and b"Ada" not in body:
                    raise RuntimeError(f"{server.name} /me did not see the customer: {body!r}")
            if server.variant == "wrapped" and not server.tag:
                status, body = http_get(server.port, "/paid", {"Authorization": self.bearer})
                if status != 200:
                    raise RuntimeError(f"{server.name} /paid, bearer token: {status} {body!r}")

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()
        if self.charge is not None:
            self.charge.stop()
        if self.redis is not None:
            self.redis.stop()

    # -- one measured run ----------------------------------------------------------------

    def headers(self, credential: str | None) -> dict[str, str]:
        if credential == "cookie":
            return {"Cookie": self.cookie}
        if credential == "bearer":
            return {"Authorization": self.bearer}
        return {}

    def measure(self, server: Server, path: str, credential: str | None, seconds: float) -> Run:
        assert self.charge is not None
        script = lua_headers(self.tmp / f"{credential}.lua", self.headers(credential))
        charges_before = self.charge.stats(server.charge_port)
        busy = core_busy_ticks(SERVER_CORE)
        ticks = cpu_ticks(server.pid)
        result = wrk(server.url + path, seconds, self.args.connections, script)
        ticks = cpu_ticks(server.pid) - ticks
        busy = core_busy_ticks(SERVER_CORE) - busy
        charges_after = self.charge.stats(server.charge_port)
        if result.non_2xx or result.socket_errors:
            raise RuntimeError(
                f"{server.name} {path}: {result.non_2xx} non-2xx answers, "
                f"{result.socket_errors} socket errors in {result.requests} requests"
            )
        cpu = ticks / CLK_TCK
        return Run(
            rps=result.rps,
            cpu_us=cpu / result.requests * 1e6 if result.requests else float("nan"),
            util=cpu / result.seconds if result.seconds else 0.0,
            requests=result.requests,
            charge_connections=charges_after["connections"] - charges_before["connections"],
            foreign=max(0.0, (busy - ticks) / CLK_TCK / result.seconds) if result.seconds else 0.0,
        )

    # -- scenarios 1-3 ---------------------------------------------------------------------

    def cases(self) -> list[Case]:
        cases = []
        if "1" in self.args.only:
            cases += self.overhead_cases()
        if "8" in self.args.only:
            cases += self.store_cases()
        return cases

    def overhead_cases(self) -> list[Case]:
        """Scenarios 1-3: free anonymous vs bare, signed-in and priced vs the floor."""
        cases = []
        for adapter in ("wsgi", "asgi"):
            mine = ["wrapped"]
            if f"{adapter}/candidate" in self.servers:
                mine.append("candidate")
            fast = [
                s.variant
                for s in self.servers.values()
                if s.adapter == adapter and s.variant.startswith("t-")
            ]
            free = {"wrapped": TARGETS["1"]}
            cases += [
                Case("1", "free, no cookie", adapter, "/", None, "bare", ["bare", *mine], free),
            ]
            if f"{adapter}/starlette-bare" in self.servers:
                theirs = ["starlette-bare", *(f"starlette-{v}" for v in mine)]
                judged = {"starlette-wrapped": TARGETS["1"]}
                cases.append(
                    Case("1", "free, no cookie, Starlette", adapter, "/", None, theirs[0], theirs,
                         judged)
                )  # fmt: skip
            priced = {"wrapped": TARGETS.get("3" + adapter, TARGETS["3"])}
            cases += [
                Case("2", "free, signed in", adapter, "/me", "cookie", "floor", ["floor", *mine],
                     {"wrapped": TARGETS["2"]}),
                Case("3", "priced", adapter, "/paid", "cookie", "floor",
                     ["floor", *mine, *fast], priced),
            ]  # fmt: skip
        return cases

    def store_cases(self) -> list[Case]:
        """Scenario 8: each store vs the default memory:// one; 9: a bearer token vs the cookie.

        And 10: Prometheus metrics on vs off (when prometheus_client is installed).
        """
        cases = []
        for adapter in ("wsgi", "asgi"):
            stores = [
                s.variant for s in self.servers.values()
                if s.adapter == adapter and s.variant.startswith("s-")
            ]  # fmt: skip
            variants = ["wrapped", *stores]
            cases += [
                Case("8", "free, signed in, per store", adapter, "/me", "cookie", "wrapped",
                     variants, {"s-sqlite": TARGETS["8"]}),
                Case("8", "priced, per store", adapter, "/paid", "cookie", "wrapped", variants),
                Case("9", "priced, bearer token / cookie", adapter, "/paid", "cookie", "wrapped",
                     ["wrapped", "wrapped" + BEARER], {"wrapped" + BEARER: TARGETS["9"]}),
            ]  # fmt: skip
            if f"{adapter}/o-prometheus" in self.servers:
                metrics = ["wrapped", "o-prometheus"]
                cases += [
                    Case("10", "free, no cookie, metrics on / off", adapter, "/", None, "wrapped",
                         metrics),
                    Case("10", "priced, metrics on / off", adapter, "/paid", "cookie", "wrapped",
                         metrics, {"o-prometheus": TARGETS["10"]}),
                ]  # fmt: skip
        return cases

    def throughput(self) -> list[Case]:
        args = self.args
        cases = self.cases()
        if not cases:
            return []
        pairs = [(case, variant) for case in cases for variant in case.variants]
        groups = "".join(sorted({case.key for case in cases}))
        print(f"\n[{groups}] warm-up: {len(pairs)} runs of {args.warmup}s")
        for case, variant in pairs:
            name, credential = case.target(variant)
            self.measure(self.servers[name], case.path, credential, args.warmup)
        for round_no in range(args.rounds):
            order = pairs if round_no % 2 == 0 else pairs[::-1]
            line = []
            for case, variant in order:
                name, credential = case.target(variant)
                run = self.measure(self.servers[name], case.path, credential, args.duration)
                case.runs.setdefault(variant, []).append(run)
                short = _ABBREV.get(variant, variant)
                line.append(f"{case.key}{case.adapter[0]}:{short}={run.rps:.0f}")
            foreign = _median([r.foreign for c in cases for rs in c.runs.values() for r in rs[-1:]])
            print(
                f"  round {round_no + 1}/{args.rounds} ({self.elapsed()}, other load on core "
                f"{SERVER_CORE}: {foreign:.0%}): " + " ".join(line)
            )
        return cases

    # -- scenario 4: time to first byte of a streamed, authorize-capture response -------------

    def ttfb(self) -> dict[str, Any]:
        args = self.args
        names = [
            f"{adapter}/{variant}"
            for adapter in ("wsgi", "asgi")
            for variant in ("bare", "floor", "wrapped", "candidate")
            if f"{adapter}/{variant}" in self.servers
        ]
        print(f"\n[4] TTFB on /stream: {args.ttfb_requests} requests per variant, interleaved")
        clients = {name: _RawClient(self.servers[name].port, self.cookie) for name in names}
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
        os.sched_setaffinity(0, {int(CLIENT_CORE)})
        try:
            for client in clients.values():  # warm-up: connections, pools, caches
                for _ in range(20):
                    client.get("/stream")
            shuffle = random.Random(6)
            for _ in range(args.ttfb_requests):
                # A random order, and a pause after each answer: a capture still running
                # after its response (on the same core) must not delay the next server.
                order = shuffle.sample(names, len(names))
                for name in order:
                    samples[name].append(clients[name].get("/stream"))
                    time.sleep(TTFB_PAUSE)
        finally:
            for client in clients.values():
                client.close()
            os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
        out: dict[str, Any] = {}
        for name, values in samples.items():
            first = [v[0] for v in values]
            last = [v[1] for v in values]
            q1, _, q3 = statistics.quantiles(first, n=4)
            out[name] = {
                "ttfb_ms": statistics.median(first) * 1e3,
                "ttfb_iqr_ms": (q3 - q1) * 1e3,
                "ttlb_ms": statistics.median(last) * 1e3,
                "stream_ms": statistics.median(b - a for a, b in values) * 1e3,
            }
        return out

    # -- scenarios 5 and 6: a long mixed run on fresh servers -----------------------------------

    def soak(self) -> dict[str, Any]:
        assert self.charge is not None
        args = self.args
        out: dict[str, Any] = {}
        for adapter in ("wsgi", "asgi"):
            server = self.servers[f"{adapter}/wrapped-mem"]
            print(
                f"\n[5-6] {server.name}: {args.soak_requests:,} mixed requests ({self.elapsed()})"
            )
            first = lua_mix(self.tmp / "mix-first.lua", self.cookie, self.bad_cookie, 1000)
            mix = lua_mix(self.tmp / "mix.lua", self.cookie, self.bad_cookie)
            base = self.charge.stats(server.charge_port)
            done = wrk(server.url + "/", 1, args.connections, first)
            total = done.requests
            if done.non_2xx or done.socket_errors:
                raise RuntimeError(f"{server.name}: errors in the mixed run: {done}")
            rss_first = rss_bytes(server.pid)
            after_first = self.charge.stats(server.charge_port)
            curve = [(total, rss_first)]
            rate = max(done.rps, 100.0)
            while total < args.soak_requests:
                seconds = min(10.0, max(1.0, (args.soak_requests - total) / rate + 0.5))
                result = wrk(server.url + "/", seconds, args.connections, mix)
                if result.non_2xx or result.socket_errors:
                    raise RuntimeError(f"{server.name}: errors in the mixed run: {result}")
                total += result.requests
                rate = max(result.rps, 100.0)
                curve.append((total, rss_bytes(server.pid)))
            end = self.charge.stats(server.charge_port)
            charges = _charges(end) - _charges(base)
            later_charges = _charges(end) - _charges(after_first)
            print(
                "  RSS: "
                + ", ".join(f"{n:,}: {rss / 2**20:.1f} MiB" for n, rss in curve)
                + f"; charge connections {end['connections'] - base['connections']}"
                + f" for {charges:,} charges"
            )
            out[adapter] = {
                "requests": total,
                "rss_first": rss_first,
                "first_requests": curve[0][0],
                "rss_last": curve[-1][1],
                "curve": curve,
                "charges": charges,
                "connections": end["connections"] - base["connections"],
                "connections_after_first": end["connections"] - after_first["connections"],
                "charges_after_first": later_charges,
                "captures": end.get("captures", 0) - base.get("captures", 0),
                "authorizations": end.get("authorizations", 0) - base.get("authorizations", 0),
            }
        return out

    # -- scenario 7: a remote Small Transfers (the charge endpoint answers late) -------------

    def latency(self) -> dict[str, Any]:
        """Priced req/s with the endpoint answering after ``--latency-ms``, vs the ideal.

        Per server and round: a run at no delay (its CPU-bound priced rate), then a
        run at the delay, both with ``--latency-connections`` wrk connections. The
        ideal is min(connections / delay, the no-delay rate of the same round).
        Non-2xx answers are counted, not fatal. Connections opened and charges are
        counted after each run's warm-up.
        """
        assert self.charge is not None
        args = self.args
        delay = args.latency_ms / 1000
        conns = args.latency_connections
        names = [
            name
            for name, server in self.servers.items()
            if server.variant in ("wrapped", "candidate")
            and (server.tag == f"-x{conns}" if server.adapter == "wsgi" else not server.tag)
        ]
        print(
            f"\n[7] latency {args.latency_ms:g} ms, wrk -c{conns}: {', '.join(names)} "
            f"({args.latency_rounds} rounds, {self.elapsed()})"
        )
        script = lua_headers(self.tmp / "cookie.lua", self.headers("cookie"))
        out: dict[str, Any] = {name: {"rounds": []} for name in names}
        try:
            for round_no in range(args.latency_rounds):
                order = names if round_no % 2 == 0 else names[::-1]
                for name in order:
                    server = self.servers[name]
                    row: dict[str, Any] = {}
                    for label, ms in (("none", 0.0), ("late", args.latency_ms)):
                        self.charge.set_latency(ms)
                        wrk(server.url + "/paid", args.warmup, conns, script)  # pool grows here
                        self.drain(server, ms)
                        before = self.charge.stats(server.charge_port)
                        ticks = cpu_ticks(server.pid)
                        result = wrk(server.url + "/paid", args.duration, conns, script)
                        ticks = cpu_ticks(server.pid) - ticks
                        after = self.charge.stats(server.charge_port)
                        charges = _charges(after) - _charges(before)
                        row[label] = {
                            "rps": result.rps,
                            "requests": result.requests,
                            "non_2xx": result.non_2xx,
                            "socket_errors": result.socket_errors,
                            "cpu_us": ticks / CLK_TCK / result.requests * 1e6
                            if result.requests
                            else float("nan"),
                            "charges": charges,
                            "connections": after["connections"] - before["connections"],
                            "max_in_flight": after.get("max_pending", 0),
                        }
                    ideal = min(conns / delay, row["none"]["rps"]) if delay else row["none"]["rps"]
                    row["ideal"] = ideal
                    row["ratio"] = row["late"]["rps"] / ideal if ideal else float("nan")
                    out[name]["rounds"].append(row)
                    print(
                        f"  round {round_no + 1} {name}: {row['none']['rps']:.0f} req/s at 0 ms, "
                        f"{row['late']['rps']:.0f} at {args.latency_ms:g} ms "
                        f"({row['ratio']:.2f} of ideal {ideal:.0f}), "
                        f"non-2xx {row['late']['non_2xx']}, "
                        f"in flight at the endpoint {row['late']['max_in_flight']}, "
                        f"new connections {row['late']['connections']}"
                    )
        finally:
            self.charge.set_latency(0)
        return out

    def drain(self, server: Server, ms: float) -> None:
        """Wait until the charges still in flight from a finished wrk run are answered.

        wrk closes its connections at the end of a run, but the server finishes
        the requests it had: back to back, the next run would find those charges
        still holding their connections (and count them as its own).
        """
        assert self.charge is not None
        deadline = time.monotonic() + 10 + ms / 100
        while self.charge.stats(server.charge_port).get("pending", 0):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{server.name}: charges still in flight after the run")
            time.sleep(ms / 1000 / 2 + 0.01)
        time.sleep(0.05)  # and their answers reach the server
        self.charge.reset_peak()

    def elapsed(self) -> str:
        return f"{time.monotonic() - self.started:.0f}s"


_ABBREV = {
    "bare": "b",
    "wrapped": "w",
    "floor": "f",
    "candidate": "c",
    "starlette-bare": "sb",
    "starlette-wrapped": "sw",
    "starlette-candidate": "sc",
    "s-sqlite": "sq",
    "s-redis": "rd",
    "wrapped" + BEARER: "wb",
    "o-prometheus": "om",
}


def _charges(stats: dict[str, int]) -> int:
    return stats.get("transactions", 0) + stats.get("authorizations", 0)


class _RawClient:
    """A kept-alive HTTP/1.1 connection that times the first and the last byte."""

    def __init__(self, port: int, cookie: str) -> None:
        self.port = port
        self.cookie = cookie
        self.sock: socket.socket | None = None

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def get(self, path: str) -> tuple[float, float]:
        request = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nAccept: */*\r\n"
            f"Cookie: {self.cookie}\r\n\r\n"
        ).encode("latin-1")
        for _ in range(3):
            if self.sock is None:
                self.sock = self._connect()
            sock = self.sock
            start = time.perf_counter()
            sock.sendall(request)
            data = sock.recv(65536)
            first = time.perf_counter()
            if not data:  # the server closed an idle kept-alive connection
                self.close()
                continue
            while not data.endswith(b"0\r\n\r\n"):
                more = sock.recv(65536)
                if not more:
                    raise RuntimeError("connection closed mid-response")
                data += more
            last = time.perf_counter()
            if not data.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"unexpected answer: {data[:200]!r}")
            if b"connection: close" in data.lower().split(b"\r\n\r\n", 1)[0]:
                self.close()
            return first - start, last - start
        raise RuntimeError("could not get an answer")

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def start_redis(directory: Path) -> Any:
    """The store tests' throwaway ``redis-server`` (loopback, a free port), or None."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "redis_server", ROOT / "tests" / "store" / "redis_server.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    binary = module.redis_server_binary()
    if binary is None:
        print("  (redis-server not installed: no s-redis line; bash scripts/install-redis)")
        return None
    server = module.RedisServer(binary, directory)
    server.start()
    # With the charge endpoint, on the load's core: a store on another host.
    os.sched_setaffinity(server.process.pid, {int(CLIENT_CORE)})
    return server


def _has(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


# -- the sniffio check -------------------------------------------------------------------


def sniffio_check(port: int) -> dict[str, Any]:
    """Is sniffio installed, and how often does httpcore import it per async request?"""
    import asyncio
    import builtins

    import httpx

    counts = {"sniffio": 0}
    real_import = builtins.__import__

    def counting(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "sniffio":
            counts["sniffio"] += 1
        return real_import(name, *args, **kwargs)

    async def go() -> int:
        async with httpx.AsyncClient() as client:
            await client.post(f"http://127.0.0.1:{port}/api/v1/transactions", json={})
            counts["sniffio"] = 0
            builtins.__import__ = counting
            try:
                for _ in range(20):
                    await client.post(f"http://127.0.0.1:{port}/api/v1/transactions", json={})
            finally:
                builtins.__import__ = real_import
        return counts["sniffio"]

    per_request = asyncio.run(go()) / 20
    try:
        import sniffio

        version = getattr(sniffio, "__version__", "?")
    except ImportError:
        version = None
    return {"installed": version, "imports_per_request": per_request}


# -- the report --------------------------------------------------------------------------


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ratios(case: Case, variant: str) -> dict[str, float]:
    """Per-round ratios to the case's reference (1.0 = costs nothing; higher is better).

    ``cpu``: reference CPU per request / this variant's; ``tput``: this
    variant's requests per second / the reference's. Medians, mins and maxes
    over rounds; each ratio is taken inside one round.
    """
    ref, runs = case.runs[case.ref], case.runs[variant]
    tput = [r.rps / b.rps for r, b in zip(runs, ref, strict=True)]
    cpu = [b.cpu_us / r.cpu_us for r, b in zip(runs, ref, strict=True)]
    return {
        "cpu": _median(cpu),
        "cpu_min": min(cpu),
        "cpu_max": max(cpu),
        "tput": _median(tput),
        "tput_min": min(tput),
        "tput_max": max(tput),
    }


#: The least CPU/request ratio of ``wrapped`` per scenario (and adapter, where they differ):
#: free >= 0.95 of bare; priced >= 1.5x (WSGI) / 2.0x (ASGI) cheaper than the tuned floor.
#: 8: a signed-in free request with the SQLite store >= 0.90 of the same with memory://;
#: 9: a priced request with a bearer token costs no more than with the cookie (within 3 %);
#: 10: metrics on cost a priced request under 2 %.
TARGETS = {
    "1": 0.95, "2": 0.90, "3": 0.90, "3wsgi": 1.5, "3asgi": 2.0, "8": 0.90, "9": 0.97, "10": 0.98,
}  # fmt: skip


def machine() -> dict[str, str]:
    model = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = {}
    for name in ("httpx", "httpcore", "uvicorn", "gunicorn", "h11", "sniffio", "aiohttp"):
        try:
            from importlib.metadata import version

            versions[name] = version(name)
        except Exception:
            versions[name] = "-"
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        commit = f"{head}{' + uncommitted changes in src/' if dirty else ''}" if head else "?"
    except OSError:
        commit = "?"
    return {
        "commit": commit,
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
        **versions,
    }


def report(
    bench: Bench,
    cases: list[Case],
    ttfb: dict[str, Any],
    soak: dict[str, Any],
    sniff: dict[str, Any],
    latency: dict[str, Any] | None = None,
) -> str:
    args = bench.args
    lines: list[str] = []
    add = lines.append
    info = machine()
    add(
        f"machine: {info['nproc']} cores, {info['cpu']}, Python {info['python']}, "
        f"httpx {info['httpx']}, httpcore {info['httpcore']}, uvicorn {info['uvicorn']}, "
        f"gunicorn {info['gunicorn']}, aiohttp {info['aiohttp']}; st-middleware at {info['commit']}"
    )
    threads = args.gunicorn_threads
    add(
        f"setup: servers on core {SERVER_CORE} (gunicorn 1 worker "
        f"{f'gthread x{threads}' if threads else 'sync'}, uvicorn 1 process), wrk -t1 "
        f"-c{args.connections} + charge endpoint on core {CLIENT_CORE}; "
        f"{args.rounds} interleaved rounds x {args.duration}s; medians of per-round ratios"
    )
    add(
        f"sniffio: {'installed ' + sniff['installed'] if sniff['installed'] else 'NOT installed'}"
        f", imported {sniff['imports_per_request']:.0f}x per async httpx request"
    )
    foreign = [r.foreign for case in cases for runs in case.runs.values() for r in runs]
    if foreign:
        add(
            f"other processes on core {SERVER_CORE} during the runs: median {_median(foreign):.0%},"
            f" max {max(foreign):.0%} of the core"
        )
    if cases:
        _throughput_table(add, cases)
    if ttfb:
        _ttfb_table(add, ttfb)
    if soak:
        _soak_table(add, soak)
    if latency:
        _latency_table(add, latency, args)
    if cases:
        _cpu_table(add, cases)
    add("")
    add(f"total time: {bench.elapsed()}")
    return "\n".join(lines)


def _throughput_table(add: Any, cases: list[Case]) -> None:
    add("")
    add(
        "| # | scenario | adapter | variant / reference | **CPU/req ratio** (min-max) "
        "| throughput ratio (min-max) | CPU us/req | req/s | target | met |"
    )
    add("|---|---|---|---|---|---|---|---|---|---|")
    for case in cases:
        for variant in case.variants:
            if variant == case.ref:
                continue
            r = ratios(case, variant)
            runs, ref = case.runs[variant], case.runs[case.ref]
            target = case.targets.get(variant, 0.0)
            judged = variant in case.targets
            goal = f">= {target:.2f}" if judged else "-"
            met = "-"
            if judged:
                met = "yes" if r["cpu"] >= target else "**no**"
                if (r["tput"] >= target) != (r["cpu"] >= target):
                    met += f" (tput {'yes' if r['tput'] >= target else 'no'})"
            add(
                f"| {case.key} | {case.scenario} | {case.adapter.upper()} | {variant} / {case.ref}"
                f" | **{r['cpu']:.3f}** ({r['cpu_min']:.2f}-{r['cpu_max']:.2f})"
                f" | {r['tput']:.3f} ({r['tput_min']:.2f}-{r['tput_max']:.2f})"
                f" | {_median([x.cpu_us for x in runs]):.0f} / "
                f"{_median([x.cpu_us for x in ref]):.0f}"
                f" | {_median([x.rps for x in runs]):.0f} / {_median([x.rps for x in ref]):.0f}"
                f" | {goal} | {met} |"
            )


def _ttfb_table(add: Any, ttfb: dict[str, Any]) -> None:
    add("")
    add(
        "| # | TTFB of /stream (authorize-capture) | adapter | median TTFB ms (IQR) "
        "| vs bare | vs floor | stream ms (first->last byte) | within noise of floor |"
    )
    add("|---|---|---|---|---|---|---|---|")
    for adapter in ("wsgi", "asgi"):
        bare, floor = ttfb[f"{adapter}/bare"], ttfb[f"{adapter}/floor"]
        for variant in ("bare", "floor", "wrapped", "candidate"):
            row = ttfb.get(f"{adapter}/{variant}")
            if row is None:
                continue
            delta = row["ttfb_ms"] - floor["ttfb_ms"]
            noise = floor["ttfb_iqr_ms"] / 2
            # Faster than the floor is fine; slower by more than half its IQR is not.
            within = "yes" if abs(delta) <= noise else ("faster" if delta < 0 else "**no**")
            add(
                f"| 4 | {variant} | {adapter.upper()} | {row['ttfb_ms']:.3f} "
                f"({row['ttfb_iqr_ms']:.3f}) | {row['ttfb_ms'] / bare['ttfb_ms']:.2f}x "
                f"(+{row['ttfb_ms'] - bare['ttfb_ms']:.3f} ms) | "
                f"{row['ttfb_ms'] / floor['ttfb_ms']:.2f}x ({delta:+.3f} ms) | "
                f"{row['stream_ms']:.2f} | "
                f"{within if variant not in ('bare', 'floor') else '-'} |"
            )


def _soak_table(add: Any, soak: dict[str, Any]) -> None:
    add("")
    add(
        "| # | long mixed run, wrapped | adapter | requests | charges | connections opened "
        "(after the first ~1,000 requests) | per 1,000 charges: all / after warm-up "
        "| RSS @~1,000 -> @end | growth | met |"
    )
    add("|---|---|---|---|---|---|---|---|---|---|")
    for adapter, row in soak.items():
        per = row["connections"] / (row["charges"] / 1000) if row["charges"] else float("nan")
        later = row["charges_after_first"]
        steady = row["connections_after_first"] / (later / 1000) if later else float("nan")
        growth = row["rss_last"] / row["rss_first"] - 1
        add(
            f"| 5 | connections to Small Transfers | {adapter.upper()} | {row['requests']:,} "
            f"| {row['charges']:,} | {row['connections']} ({row['connections_after_first']}) "
            f"| {per:.2f} / {steady:.2f} | - | - "
            f"| {'yes' if steady <= 1 else '**no**'} |"
        )
        add(
            f"| 6 | memory (RSS of the worker) | {adapter.upper()} | {row['requests']:,} "
            f"| {row['charges']:,} | - | - "
            f"| {row['rss_first'] / 2**20:.1f} MiB @{row['first_requests']:,} -> "
            f"{row['rss_last'] / 2**20:.1f} MiB @{row['requests']:,} | {growth:+.1%} "
            f"| {'yes' if growth <= 0.05 else '**no**'} |"
        )


def _latency_table(add: Any, latency: dict[str, Any], args: argparse.Namespace) -> None:
    add("")
    add(
        f"| # | priced, Small Transfers {args.latency_ms:g} ms away, wrk -c"
        f"{args.latency_connections} | server | req/s at 0 ms | req/s at {args.latency_ms:g} ms "
        "| ideal | **ratio** (min-max) | non-2xx | in flight at the endpoint (max) "
        "| connections opened per 1,000 charges | target | met |"
    )
    add("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, data in latency.items():
        rounds = data["rounds"]
        if not rounds:
            continue
        ratios_ = [r["ratio"] for r in rounds]
        late = [r["late"] for r in rounds]
        non_2xx = sum(r["non_2xx"] + r["socket_errors"] for r in late)
        charges = sum(r["charges"] for r in late)
        opened = sum(r["connections"] for r in late)
        per = opened / (charges / 1000) if charges else float("nan")
        ratio = _median(ratios_)
        judged = "/wrapped" in name
        met = "-"
        if judged:
            met = "yes" if ratio >= 0.90 and non_2xx == 0 and per <= 1 else "**no**"
        adapter, _, variant = name.partition("/")
        add(
            f"| 7 | {variant} | {adapter.upper()} "
            f"| {_median([r['none']['rps'] for r in rounds]):.0f} "
            f"| {_median([r['rps'] for r in late]):.0f} "
            f"| {_median([r['ideal'] for r in rounds]):.0f} "
            f"| **{ratio:.2f}** ({min(ratios_):.2f}-{max(ratios_):.2f}) | {non_2xx} "
            f"| {max(r['max_in_flight'] for r in late)} | {per:.2f} "
            f"| {'>= 0.90, 0 non-2xx' if judged else '-'} | {met} |"
        )


def _cpu_table(add: Any, cases: list[Case]) -> None:
    """Priced-request server CPU per transport, vs the tuned-httpx floor (scenario 3 runs)."""
    add("")
    add(
        "| # | priced request, server CPU | adapter | transport | CPU us/req (min-max) "
        "| floor us/req | **floor / this** (min-max) |"
    )
    add("|---|---|---|---|---|---|---|")
    names = {
        "wrapped": "built-in (default)",
        "candidate": "candidate",
        "t-httpx": "httpx (httpcore) via transport=",
        "t-aiohttp": "httpx-aiohttp via transport=",
        "t-threadlocal": "thread-local http.client via transport=",
    }
    for case in cases:
        if case.key != "3":
            continue
        floor = case.runs[case.ref]
        for variant in case.variants:
            if variant == case.ref:
                continue
            runs = case.runs[variant]
            r = ratios(case, variant)
            cpu = [x.cpu_us for x in runs]
            add(
                f"| 3 | priced | {case.adapter.upper()} | {names.get(variant, variant)} "
                f"| {_median(cpu):.0f} ({min(cpu):.0f}-{max(cpu):.0f}) "
                f"| {_median([x.cpu_us for x in floor]):.0f} "
                f"| **{r['cpu']:.2f}x** ({r['cpu_min']:.2f}-{r['cpu_max']:.2f}) |"
            )


# -- entry point -------------------------------------------------------------------------


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a ~2 minute smoke run")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 5, quick 2)")
    parser.add_argument("--duration", type=float, help="seconds per run (default 3, quick 1)")
    parser.add_argument("--warmup", type=float, help="seconds of warm-up per pair (default 1)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (32)")
    parser.add_argument(
        "--gunicorn-threads", type=int, default=4, help="gthread threads; 0 = sync worker (4)"
    )
    parser.add_argument("--ttfb-requests", type=int, help="per variant (default 300, quick 100)")
    parser.add_argument(
        "--soak-requests", type=int, help="memory run length (default 100000, quick 20000)"
    )
    parser.add_argument(
        "--no-fast",
        dest="fast",
        action="store_false",
        help="skip the other transports (t-httpx, t-aiohttp, t-threadlocal) in scenario 3",
    )
    parser.add_argument(
        "--only",
        default="14578",
        help="scenario groups to run: 1 (=1-3), 4, 5 (=5-6), 7 (latency), "
        "8 (=8-10: stores, bearer tokens, metrics); e.g. 17",
    )
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=50.0,
        help="scenario 7: the charge endpoint answers after this delay (50)",
    )
    parser.add_argument(
        "--latency-connections",
        type=int,
        default=128,
        help="scenario 7: wrk connections, and the gunicorn threads of its WSGI servers (128)",
    )
    parser.add_argument("--latency-rounds", type=int, help="scenario 7 rounds (default 3, quick 1)")
    parser.add_argument(
        "--json", type=Path, help="write the raw results here (default: in the run's temp dir)"
    )
    parser.add_argument(
        "--candidate",
        type=Path,
        metavar="SRC",
        help="also run the middleware from this source tree (a dir holding st_middleware/), "
        "side by side with the installed one: to measure a proposed change",
    )
    parser.add_argument(
        "--candidate-options",
        metavar="JSON",
        help="extra middleware keywords for the candidate, e.g. '{\"max_connections\": 4}' "
        "(without --candidate: the installed middleware with these options)",
    )
    args = parser.parse_args(argv)
    quick = args.quick
    defaults = {
        "rounds": 2 if quick else 5,
        "duration": 1.0 if quick else 3.0,
        "warmup": 1.0,
        "ttfb_requests": 100 if quick else 300,
        "soak_requests": 20_000 if quick else 100_000,
        "latency_rounds": 1 if quick else 3,
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def preflight() -> None:
    if shutil.which("wrk") is None:
        raise SystemExit(
            "wrk is not installed: run `bash bench/run` (installs it with apt-get as root), "
            "or `sudo apt-get install -y wrk`"
        )
    if shutil.which("taskset") is None:
        raise SystemExit("taskset is missing (util-linux)")
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("needs 2 cores: servers on core 0, the load generator on core 1")


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    preflight()
    random.seed(0)
    bench = Bench(args)
    print(f"st-middleware benchmark ({'quick' if args.quick else 'full'}); logs in {bench.tmp}")
    try:
        bench.start()
        assert bench.charge is not None
        print(f"  {len(bench.servers)} servers up ({bench.elapsed()})")
        sniff = sniffio_check(bench.charge.ports[0])
        cases = bench.throughput()
        ttfb = bench.ttfb() if "4" in args.only else {}
        soak = bench.soak() if "5" in args.only else {}
        latency = bench.latency() if "7" in args.only else {}
    finally:
        bench.stop()
    print("\n" + report(bench, cases, ttfb, soak, sniff, latency))
    out = args.json or bench.tmp / "results.json"
    if out:
        out.write_text(
            json.dumps(
                {
                    "machine": machine(),
                    "args": {k: str(v) for k, v in vars(args).items()},
                    "cases": [
                        {
                            "key": c.key,
                            "adapter": c.adapter,
                            "path": c.path,
                            "runs": {v: [r.__dict__ for r in rs] for v, rs in c.runs.items()},
                        }
                        for c in cases
                    ],
                    "ttfb": ttfb,
                    "soak": soak,
                    "latency": latency,
                    "sniffio": sniff,
                },
                indent=1,
            )
        )
        print(f"raw results: {out}")
    return 0
