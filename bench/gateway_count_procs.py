"""The processes `bench.gateway_count` measures around: the gateway under test and a stub
upstream that answers like auth's `/me`.

Run as a script, not as `bench.…`, with the tree under test first on PYTHONPATH, so
that one copy of it can start an older tree's gateway:

    python -P bench/gateway_count_procs.py gateway --port P --upstream URL --token-file F
    python -P bench/gateway_count_procs.py upstream --port P [--delay-ms D]
                                  [--service-ms S] [--batch K --freeze-pid PID]

The gateway is `gateway.server` as in production (its own HTTP/1.1 server, uvloop when
installed, `create_app`'s pipeline and upstream client), with one difference: its
lifespan builds the pipeline's services without NATS. So there is no rate-limit store
(the limiter is off, as with IGNY8_DEBUG_THROTTLE) and no revocation watch; a Bearer
token it issued itself is verified once, then found in the verifier's cache.

The upstream answers `GET` with a 200 and a JSON body the size of auth's `/me`, with the
headers a service sends (`x-request-id`, `server-timing`). `--delay-ms` holds each answer
that long; `--service-ms` answers one request after the other, each that long after the
previous one (a single-process service busy that long per request, as auth is).
`--batch K` holds answers until K requests wait, then (after `--delay-ms`) writes all K
while the gateway is stopped (SIGSTOP), so that the gateway finds the K answers in one
wake-up whatever the machine's load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import heapq
import os
import selectors
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

# About the size of auth's /me answer for a fresh user.
ME_BODY = (
    b'{"user":{"id":1,"email":"bench@example.com","username":"bench","first_name":"Bench",'
    b'"last_name":"User","role":"owner","status":"active","is_active":true,'
    b'"date_joined":"2026-11-24T02:21:32.000000Z","last_login":"2026-12-03T13:00:00.000000Z",'
    b'"account":{"id":1,"name":"Bench account","slug":"bench-account","status":"active",'
    b'"plan":{"id":1,"name":"Starter","slug":"starter"},"credits":1000,'
    b'"owner_id":1,"created_at":"2026-11-24T02:21:32.000000Z"},'
    b'"preferences":{"theme":"light","timezone":"UTC","language":"en"}}}'
)


# ---- freezing a process ----------------------------------------------------------------

def freeze(pid: int) -> None:
    """Stops `pid` (SIGSTOP) and waits until every thread of it is stopped."""
    os.kill(pid, signal.SIGSTOP)
    tasks = Path(f"/proc/{pid}/task")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        states = []
        for task in tasks.iterdir():
            with contextlib.suppress(OSError):
                stat = (task / "stat").read_text()
                states.append(stat[stat.rindex(")") + 2])
        if states and all(state in "Tt" for state in states):
            return
        time.sleep(0.0002)
    raise RuntimeError(f"process {pid} did not stop")


def thaw(pid: int) -> None:
    os.kill(pid, signal.SIGCONT)


# ---- the stub upstream -----------------------------------------------------------------

class _Client:
    __slots__ = ("buffer", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""


def _answer(request_head: bytes) -> bytes:
    request_id = b"-"
    for line in request_head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"x-request-id":
            request_id = value.strip()
            break
    return (b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\ncontent-type: application/json\r\n"
            b"x-request-id: %s\r\nserver-timing: app;dur=0.52\r\n\r\n%s"
            % (len(ME_BODY), request_id, ME_BODY))


def run_upstream(port: int, delay_ms: float, batch: int, freeze_pid: int | None,
                 service_ms: float = 0.0) -> None:
    """A single-threaded HTTP/1.1 server: keep-alive, GET only, answers as above."""
    listener = socket.create_server(("127.0.0.1", port), backlog=512)
    listener.setblocking(False)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    timers: list[tuple[float, int, socket.socket, bytes]] = []  # (due, seq, sock, answer)
    held: list[tuple[socket.socket, bytes]] = []
    seq = 0
    busy_until = 0.0
    print("ready", flush=True)
    while True:
        timeout = max(0.0, timers[0][0] - time.monotonic()) if timers else None
        for key, _ in selector.select(timeout):
            if key.fileobj is listener:
                with contextlib.suppress(BlockingIOError):
                    sock, _ = listener.accept()
                    sock.setblocking(False)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    selector.register(sock, selectors.EVENT_READ, _Client(sock))
                continue
            client: _Client = key.data
            try:
                data = client.sock.recv(65536)
            except ConnectionError:
                data = b""
            if not data:
                selector.unregister(client.sock)
                client.sock.close()
                continue
            client.buffer += data
            while b"\r\n\r\n" in client.buffer:
                head, _, client.buffer = client.buffer.partition(b"\r\n\r\n")
                answer = _answer(head)
                if batch > 1:
                    held.append((client.sock, answer))
                elif delay_ms > 0 or service_ms > 0:
                    # A delay holds each answer; a service time queues them, one after
                    # the other, like a single-process service busy that long per request.
                    now = time.monotonic()
                    due = now + delay_ms / 1000
                    if service_ms > 0:
                        due = busy_until = max(now, busy_until) + service_ms / 1000
                    seq += 1
                    heapq.heappush(timers, (due, seq, client.sock, answer))
                else:
                    client.sock.sendall(answer)
        if batch > 1 and len(held) >= batch:
            time.sleep(delay_ms / 1000)
            if freeze_pid:
                freeze(freeze_pid)
            for sock, answer in held:
                sock.sendall(answer)
            held.clear()
            if freeze_pid:
                time.sleep(0.001)  # loopback delivery is done by now; be generous
                thaw(freeze_pid)
        now = time.monotonic()
        while timers and timers[0][0] <= now:
            _, _, sock, answer = heapq.heappop(timers)
            with contextlib.suppress(OSError):
                sock.sendall(answer)


# ---- the gateway -----------------------------------------------------------------------

def run_gateway(port: int, upstream: str, token_file: Path, loop: str) -> None:
    """`python -m gateway.server`, with a lifespan that needs no NATS."""
    import aiohttp
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    import gateway
    from gateway import server
    from gateway.auth import Authenticator
    from gateway.http1 import Http1Pool
    from gateway.idempotency import IdempotencyStore
    from gateway.main import create_app
    from gateway.proxy import Services
    from gateway.settings import GatewaySettings
    from libs.common.logging import configure_logging
    from libs.common.runtime import settled_heap
    from libs.common.security import JwtVerifier, RevocationList
    from libs.common.telemetry import configure_tracing
    from libs.common.testing.tokens import TestIssuer

    print(f"gateway from {Path(gateway.__file__).parent}", flush=True)
    settings = GatewaySettings(
        environment="development", auth_url=upstream, public_url=f"http://127.0.0.1:{port}",
        debug_throttle=True, log_level="WARNING",
        # Lockstep clients pause between cases (and callgrind is slow): keep connections.
        keep_alive_seconds=600.0,
    )
    issuer = TestIssuer(settings.jwt_issuer, settings.jwt_audience)
    token_file.write_text(issuer.issue(user_id=1, account_id=1, ttl=7 * 24 * 3600))
    app = create_app(settings, keys_fetcher=issuer.fetcher())

    @contextlib.asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        # As gateway.main's lifespan, less NATS: no limiter, idempotency store or watch.
        configure_logging("gateway", settings.log_level)
        configure_tracing("gateway", settings.otlp_endpoint,
                          sampler=ParentBased(TraceIdRatioBased(settings.trace_sample_ratio)))
        verifier = JwtVerifier(issuer.fetcher(), issuer=settings.jwt_issuer,
                               audience=settings.jwt_audience,
                               leeway=settings.jwt_leeway_seconds,
                               revocations=RevocationList())
        await verifier.start()
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=settings.upstream_pool_size,
                                           limit_per_host=0, keepalive_timeout=30),
            skip_auto_headers=("User-Agent", "Accept-Encoding"),
            cookie_jar=aiohttp.DummyCookieJar())
        http1 = Http1Pool(limit=settings.upstream_pool_size,
                          connect_timeout=settings.upstream_connect_timeout_seconds,
                          timeout=settings.upstream_timeout_seconds)
        app.pipeline.services = Services(
            session=session, http1=http1,
            authenticator=Authenticator(verifier, lambda: session, settings.auth_url,
                                        cache_seconds=settings.exchange_cache_seconds),
            limiter=None,
            idempotency=IdempotencyStore(None, stale_after_seconds=60),  # type: ignore[arg-type]
        )
        try:
            with settled_heap():
                yield
        finally:
            app.pipeline.services = None
            await verifier.stop()
            await http1.close()
            await session.close()

    app.router.lifespan_context = lifespan
    if os.environ.get("GWCOUNT_CALLS"):
        _count_calls_on_signals(Path(os.environ["GWCOUNT_CALLS"]))
    make_config = getattr(server, "server_config", None)
    if make_config is not None:
        config = make_config(settings, "127.0.0.1", port)
    else:  # trees before 1381ecd
        config = server.ServerConfig(  # type: ignore[call-arg]
            host="127.0.0.1", port=port,
            keep_alive_seconds=settings.keep_alive_seconds,
            graceful_seconds=settings.graceful_shutdown_seconds)
    if loop == "uvloop":
        import uvloop

        uvloop.install()
    print(f"loop {loop}", flush=True)
    asyncio.run(server.serve(app, config))


def _count_calls_on_signals(out: Path) -> None:
    """SIGUSR1 starts counting the event loop thread's function calls (Python and C),
    SIGUSR2 stops and writes them to `out` as JSON: which functions a request calls, and
    how often, whatever the machine's speed."""
    import json
    from collections import Counter

    counts: Counter[str] = Counter()

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            code = frame.f_code
            counts[f"{code.co_filename}:{code.co_firstlineno}:{code.co_qualname}"] += 1
        elif event == "c_call":
            counts[f"C:{getattr(arg, '__qualname__', repr(arg))}"] += 1

    def start(*_: Any) -> None:
        counts.clear()
        sys.setprofile(profile)

    def stop(*_: Any) -> None:
        sys.setprofile(None)
        out.write_text(json.dumps(dict(counts.most_common())))

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    sub = parser.add_subparsers(dest="what", required=True)
    gw = sub.add_parser("gateway")
    gw.add_argument("--port", type=int, required=True)
    gw.add_argument("--upstream", required=True)
    gw.add_argument("--token-file", type=Path, required=True)
    gw.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    up = sub.add_parser("upstream")
    up.add_argument("--port", type=int, required=True)
    up.add_argument("--delay-ms", type=float, default=0.0)
    up.add_argument("--batch", type=int, default=1)
    up.add_argument("--freeze-pid", type=int, default=None)
    up.add_argument("--service-ms", type=float, default=0.0)
    args = parser.parse_args(argv)
    if args.what == "gateway":
        run_gateway(args.port, args.upstream, args.token_file, args.loop)
    else:
        run_upstream(args.port, args.delay_ms, args.batch, args.freeze_pid, args.service_ms)


if __name__ == "__main__":
    main()
