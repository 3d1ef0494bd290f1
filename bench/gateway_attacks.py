"""What clients that never finish can make the gateway hold (issue 13, H1 and H2),
measured on the real platform.

    python -m bench.gateway_attacks [--slow-heads 100] [--stalled-bodies 100] [--pipeliners 5]
                                    [--addresses 1]

Starts the platform with `igny8 up` (default settings: the deadlines, budgets and caps of
`gateway/settings.py`), then, each attack from its own loopback addresses (one each by
default, as the probe of issue 13 ran; `--addresses N` spreads every attack over N, so
that per-address caps and budgets no longer help and the process-wide ones must):

- H2, slow heads: connections that send a request head one header line every 3 s;
- H2, stalled bodies: `POST /api/v1/auth/register/` declaring a 9 MiB body, sending what
  the socket takes at once, then nothing more;
- H1, unread answers: connections that pipeline 200 `GET /api/schema/` and read nothing
  (a 4 KiB receive buffer).

Meanwhile a well-behaved client (127.0.0.1) asks `/api/v1/system/ping/` every 50 ms. The
gateway's RSS is sampled every 0.25 s. Printed: the RSS growth (peak over the start), how
long each kind of connection stayed open against its deadline and what it was answered,
and the well-behaved client's answers and latency. Goal (issue 13): at most 20 MiB more
RSS, offending connections closed within their deadlines, others served throughout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import statistics
import struct
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bench.platform import platform
from gateway.settings import GatewaySettings

RESULTS = Path(__file__).parent / "results" / "gateway_attacks.json"
MiB = 1024 * 1024
BODY = 9 * MiB
SLOW_NET, BODY_NET, PIPELINE_NET = 2, 3, 4  # 127.<net>.x.y: one network per attack
_TCP_CLOSED_STATES = {7, 8, 9}  # CLOSE, CLOSE_WAIT, LAST_ACK: the gateway has let go


@dataclass
class Attack:
    name: str
    deadline: float  # the gateway's configured deadline for this kind, seconds
    open_seconds: list[float] = field(default_factory=list)
    answers: dict[str, int] = field(default_factory=dict)
    still_open: int = 0

    def answered(self, first_line: bytes, seconds: float) -> None:
        parts = first_line.split(b" ")
        status = parts[1].decode() if len(parts) > 1 else "closed"
        self.answers[status] = self.answers.get(status, 0) + 1
        self.open_seconds.append(seconds)

    def settle(self, answer: asyncio.Future[bytes], started: float) -> None:
        """Counts a connection whose answer came (or did not, by the end)."""
        if answer.done():
            self.answered(answer.result(), time.monotonic() - started)
        else:
            self.still_open += 1
            answer.cancel()


async def _connect(port: int, source: str, rcvbuf: int | None = None
                   ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.bind((source, 0))
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=rcvbuf or 65536)
    return reader, writer, sock


async def _open(port: int, source: str, attack: Attack, first: bytes,
                rcvbuf: int | None = None
                ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, socket.socket] | None:
    """A connection for the attack with `first` sent on it, or None (counted as closed
    at once) when refused."""
    try:
        reader, writer, sock = await _connect(port, source, rcvbuf)
    except OSError:
        attack.answered(b"", 0.0)
        return None
    writer.write(first)
    await writer.drain()
    return reader, writer, sock


async def _first_line_then_close(reader: asyncio.StreamReader) -> bytes:
    try:
        line = await reader.readline()
        while await reader.read(65536):
            pass
    except (ConnectionError, OSError):
        return b""
    return line


def address(net: int, i: int, spread: int) -> str:
    n = i % spread
    return f"127.{net}.{n // 250}.{n % 250 + 1}"


async def slow_head(port: int, attack: Attack, stop: float, source: str) -> None:
    started = time.monotonic()
    opened = await _open(port, source, attack,
                         b"GET /api/v1/system/ping/ HTTP/1.1\r\nHost: bench\r\n")
    if opened is None:
        return
    reader, writer, _ = opened
    answer = asyncio.ensure_future(_first_line_then_close(reader))
    n = 0
    while not answer.done() and time.monotonic() < stop:
        with contextlib.suppress(ConnectionError, OSError):
            writer.write(b"X-Slow-%d: 1\r\n" % n)
        n += 1
        await asyncio.wait([answer], timeout=3)
    attack.settle(answer, started)
    writer.close()


async def stalled_body(port: int, attack: Attack, stop: float, source: str) -> None:
    started = time.monotonic()
    opened = await _open(port, source, attack,
                         b"POST /api/v1/auth/register/ HTTP/1.1\r\nHost: bench\r\n"
                         b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                         % BODY)
    if opened is None:
        return
    reader, writer, sock = opened
    # What the socket takes without waiting; then nothing more.
    chunk, sent = b"{" + b" " * (256 * 1024), 0
    while sent < BODY - len(chunk):
        try:
            n = sock.send(chunk)
        except (BlockingIOError, OSError):
            break
        sent += n
        if n < len(chunk):
            break
    answer = asyncio.ensure_future(_first_line_then_close(reader))
    await asyncio.wait([answer], timeout=max(0.0, stop - time.monotonic()))
    attack.settle(answer, started)
    writer.close()


def _tcp_state(sock: socket.socket) -> int:
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
    return struct.unpack("B", info[:1])[0]


async def pipeliner(port: int, attack: Attack, stop: float, source: str) -> None:
    started = time.monotonic()
    opened = await _open(port, source, attack,
                         b"GET /api/schema/ HTTP/1.1\r\nHost: bench\r\n\r\n" * 200,
                         rcvbuf=4096)
    if opened is None:
        return
    _, writer, sock = opened
    # Never read: watch the connection's TCP state instead.
    while time.monotonic() < stop:
        if _tcp_state(sock) in _TCP_CLOSED_STATES:
            attack.answered(b"HTTP/1.1 dropped", time.monotonic() - started)
            break
        await asyncio.sleep(0.25)
    else:
        attack.still_open += 1
    writer.transport.abort()


async def well_behaved(port: int, stop: float, latencies: list[float],
                       statuses: dict[int, int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = b"GET /api/v1/system/ping/ HTTP/1.1\r\nHost: bench\r\n\r\n"
    while time.monotonic() < stop:
        t = time.perf_counter()
        try:
            writer.write(request)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            status = int(head.split(b" ")[1])
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError, IndexError):
            status = 0
            writer.close()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        latencies.append((time.perf_counter() - t) * 1000)
        statuses[status] = statuses.get(status, 0) + 1
        await asyncio.sleep(0.05)
    writer.close()


async def sample_rss(proc: psutil.Process, stop: float, samples: list[float]) -> None:
    while time.monotonic() < stop:
        samples.append(proc.memory_info().rss / MiB)
        await asyncio.sleep(0.25)


async def attack(port: int, gw: psutil.Process, args: argparse.Namespace,
                 settings: GatewaySettings) -> dict[str, object]:
    # Warm: the schema is built and cached, the ping path is hot.
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for path in ("/api/schema/", "/api/v1/system/ping/"):
        writer.write(b"GET %s HTTP/1.1\r\nHost: bench\r\n\r\n" % path.encode())
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
    writer.close()
    await asyncio.sleep(2)
    start_rss = gw.memory_info().rss / MiB
    slack = 5.0  # the sweeper (1 s), lingering after an answer (2 s), scheduling
    kinds = {
        "slow heads": Attack("slow heads", settings.request_head_timeout_seconds),
        "stalled bodies": Attack("stalled bodies", settings.request_body_timeout_seconds),
        "unread answers": Attack("unread answers", settings.write_timeout_seconds),
    }
    stop = time.monotonic() + max(a.deadline for a in kinds.values()) + 3 * slack
    samples: list[float] = []
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    tasks = [sample_rss(gw, stop, samples), well_behaved(port, stop, latencies, statuses)]
    spread = args.addresses
    tasks += [slow_head(port, kinds["slow heads"], stop, address(SLOW_NET, i, spread))
              for i in range(args.slow_heads)]
    tasks += [stalled_body(port, kinds["stalled bodies"], stop, address(BODY_NET, i, spread))
              for i in range(args.stalled_bodies)]
    tasks += [pipeliner(port, kinds["unread answers"], stop, address(PIPELINE_NET, i, spread))
              for i in range(args.pipeliners)]
    await asyncio.gather(*tasks)
    return {
        "addresses_per_attack": spread,
        "rss_start_mib": start_rss,
        "rss_peak_growth_mib": max(samples) - start_rss,
        "attacks": {
            name: {"connections": len(a.open_seconds) + a.still_open,
                   "deadline_s": a.deadline,
                   "max_open_s": max(a.open_seconds, default=0.0),
                   "within_deadline": a.still_open == 0 and all(
                       s <= a.deadline + slack for s in a.open_seconds),
                   "answers": a.answers, "still_open": a.still_open}
            for name, a in kinds.items()},
        "well_behaved": {"requests": sum(statuses.values()), "statuses": statuses,
                         "p50_ms": statistics.median(latencies) if latencies else None,
                         "max_ms": max(latencies, default=None)},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--slow-heads", type=int, default=100)
    parser.add_argument("--stalled-bodies", type=int, default=100)
    parser.add_argument("--pipeliners", type=int, default=5)
    parser.add_argument("--addresses", type=int, default=1,
                        help="loopback addresses each attack is spread over")
    args = parser.parse_args()
    settings = GatewaySettings()
    with tempfile.TemporaryDirectory(prefix="igny8-bench-") as tmp, \
            platform(Path(tmp), {}) as run:
        port = run["ports"]["gateway"]
        gw_pid = next(p["pid"] for p in run["processes"] if p["name"] == "gateway")
        result = asyncio.run(attack(port, psutil.Process(gw_pid), args, settings))
    report(result)


def report(result: dict[str, object]) -> None:
    print(f"\neach attack from {result['addresses_per_attack']} address(es); "
          f"gateway RSS: {result['rss_start_mib']:.1f} MiB at the start, "
          f"peak growth {result['rss_peak_growth_mib']:.1f} MiB   (goal <= 20)")
    print(f"{'attack':<16} {'conns':>6} {'deadline s':>11} {'longest open s':>15} "
          f"{'within':>7}  answers")
    attacks = result["attacks"]
    assert isinstance(attacks, dict)
    for name, a in attacks.items():
        print(f"{name:<16} {a['connections']:>6} {a['deadline_s']:>11.0f} "
              f"{a['max_open_s']:>15.1f} {'yes' if a['within_deadline'] else 'NO':>7}  "
              f"{a['answers']}")
    ok = result["well_behaved"]
    assert isinstance(ok, dict)
    print(f"well-behaved client meanwhile: {ok['requests']} requests, statuses "
          f"{ok['statuses']}, p50 {ok['p50_ms']:.2f} ms, max {ok['max_ms']:.1f} ms")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.with_name(f"{RESULTS.stem}-{result['addresses_per_attack']}{RESULTS.suffix}"
                      ).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
