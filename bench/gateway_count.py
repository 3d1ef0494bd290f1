"""The whole gateway's cost per request, counted rather than timed.

    python -m bench.gateway_count [--tree PATH] [--requests 2000] [--warmup 200]
                                  [--callgrind] [--free SECONDS] [--loop uvloop|asyncio]

The gateway of `--tree` (default: this checkout) runs as in production (its own HTTP/1.1
server, uvloop, the pipeline, the lean upstream client) in front of a stub upstream that
answers like auth's `/me`, each in its own process, on loopback
(bench/gateway_count_procs.py says what differs from production: no NATS, so no rate-limit
store). Clients are this process.

Lockstep cases: `GET /api/v1/auth/me/` (a cached Bearer token) and the gateway-only
`GET /api/v1/system/ping/`, at batch 1 (one connection: each request wakes the gateway
alone) and batch 8 (eight connections; the eight requests, and the stub's eight answers,
are written while the gateway is stopped, so it finds them all in one wake-up whatever
the load). Per request:
- syscalls of the gateway (perf's syscall tracepoints over the measured requests only),
  and its wake-ups (voluntary context switches, /proc);
- with `--callgrind`, a second gateway under valgrind's callgrind: user-space
  instructions over the measured requests (counters zeroed after the warm-up and dumped
  after the last answer, with callgrind_control), and an idle window's instructions per
  second (the sweeper's and watchdog's timers), which the figures include.

`--free S`: the same gateway loaded freely by wrk at 8 connections for S seconds, the
stub answering at once or one request after the other (1 or 2 ms each, as a
single-process service like auth), and ping: wake-ups, syscalls and (timed, so noisy)
CPU per request; what batching a slower upstream takes away.

Instruction counts do not move with the machine's load; wake-ups and syscalls in lockstep
do not either. CPU times are printed for reference only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.gateway_count_procs import freeze, thaw
from libs.common.embedded import stop_process

ROOT = Path(__file__).resolve().parent.parent
PROCS = Path(__file__).resolve().parent / "gateway_count_procs.py"
RESULTS = Path(__file__).parent / "results" / "gateway_count.json"
ME = "/api/v1/auth/me/"
PING = "/api/v1/system/ping/"
# Syscalls worth naming; the total counts all of them.
SYSCALLS = ("epoll_wait", "epoll_pwait", "epoll_ctl", "read", "write", "readv", "writev",
            "recvfrom", "sendto", "recvmsg", "sendmsg", "poll", "getpid", "futex", "ioctl",
            "getsockopt", "setsockopt")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.2)
    raise RuntimeError(f"nothing listens on {port} after {timeout:.0f} s")


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    """Stopped even when frozen (SIGCONT first: a stopped process would not see SIGTERM)."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGCONT)
    stop_process(proc, 30)


# ---- the processes ---------------------------------------------------------------------

@dataclass
class Gateway:
    tree: Path
    loop: str
    callgrind_dir: Path | None
    port: int = 0
    upstream_port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    upstream: subprocess.Popen[bytes] | None = None
    token: str = ""
    log: Path | None = None
    calls_file: Path | None = None  # set: the gateway counts calls on SIGUSR1/SIGUSR2

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("IGNY8_", "DEBUG"))}
        env["PYTHONPATH"] = str(self.tree)
        env["PYTHONHASHSEED"] = "0"
        if self.calls_file is not None:
            env["GWCOUNT_CALLS"] = str(self.calls_file)
        return env

    def start(self, workdir: Path) -> None:
        self.port, self.upstream_port = free_port(), free_port()
        token_file = workdir / "token"
        argv = [sys.executable, "-P", str(PROCS), "gateway", "--port", str(self.port),
                "--upstream", f"http://127.0.0.1:{self.upstream_port}",
                "--token-file", str(token_file), "--loop", self.loop]
        if self.callgrind_dir is not None:
            argv = ["valgrind", "--tool=callgrind", "--dump-instr=no", "--dump-line=no",
                    f"--callgrind-out-file={self.callgrind_dir}/callgrind.out.%p", *argv]
        self.log = workdir / ("gateway-callgrind.log" if self.callgrind_dir else "gateway.log")
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(["nice", "-n", "10", *argv], cwd=self.tree,
                                         env=self.env(), stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_for_port(self.port, self.proc, 900 if self.callgrind_dir else 60)
        except RuntimeError:
            print(self.log.read_text()[-3000:], file=sys.stderr)
            raise
        self.token = token_file.read_text().strip()
        origin = next((line for line in self.log.read_text().splitlines()
                       if line.startswith("gateway from ")), "")
        if str(self.tree.resolve()) not in origin:
            raise RuntimeError(f"the gateway did not come from {self.tree}: {origin!r}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        # `nice` execs the command (and valgrind runs the program in its own process).
        return self.proc.pid

    def start_upstream(self, *, batch: int = 1, delay_ms: float = 0.0,
                       service_ms: float = 0.0) -> None:
        stop(self.upstream)
        argv = [sys.executable, "-P", str(PROCS), "upstream", "--port", str(self.upstream_port),
                "--batch", str(batch), "--delay-ms", str(delay_ms),
                "--service-ms", str(service_ms)]
        if batch > 1:
            argv += ["--freeze-pid", str(self.pid)]
        self.upstream = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL)
        assert self.proc is not None
        wait_for_port(self.upstream_port, self.upstream, 30)

    def close(self) -> None:
        stop(self.upstream)
        stop(self.proc)


# ---- lockstep clients ------------------------------------------------------------------

class Lockstep:
    """`batch` keep-alive connections; each round sends one request on every one (with the
    gateway stopped when batch > 1) and reads every answer."""

    def __init__(self, gateway: Gateway, path: str, batch: int, space_ms: float) -> None:
        self.gateway = gateway
        self.batch = batch
        self.space = space_ms / 1000
        auth = f"Authorization: Bearer {gateway.token}\r\n" if path == ME else ""
        self.request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{gateway.port}\r\n{auth}\r\n"
                        ).encode()
        self.socks = [socket.create_connection(("127.0.0.1", gateway.port))
                      for _ in range(batch)]
        for sock in self.socks:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(600)

    def run(self, requests: int) -> None:
        for _ in range(max(1, requests // self.batch)):
            if self.batch > 1:
                freeze(self.gateway.pid)
            for sock in self.socks:
                sock.sendall(self.request)
            if self.batch > 1:
                time.sleep(0.001)
                thaw(self.gateway.pid)
            for sock in self.socks:
                _read_answer(sock)
            if self.space:
                time.sleep(self.space)

    def close(self) -> None:
        for sock in self.socks:
            sock.close()


def _read_answer(sock: socket.socket) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("the gateway closed the connection")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"unexpected answer: {head[:200]!r}")
    length = int(re.search(rb"(?im)^content-length:\s*(\d+)", head)[1])  # type: ignore[index]
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("the gateway closed the connection mid-answer")
        body += chunk


# ---- what is counted -------------------------------------------------------------------

def proc_counters(pid: int) -> dict[str, float]:
    """The event loop's thread's voluntary context switches (its wake-ups: each is a
    block with nothing to do) and involuntary ones, and the process's CPU seconds."""
    out = {"wakeups": 0.0, "preempted": 0.0}
    for line in Path(f"/proc/{pid}/task/{pid}/status").read_text().splitlines():
        if line.startswith("voluntary_ctxt_switches"):
            out["wakeups"] = int(line.split()[1])
        elif line.startswith("nonvoluntary_ctxt_switches"):
            out["preempted"] = int(line.split()[1])
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    out["cpu_s"] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


@contextlib.contextmanager
def syscall_counts(pid: int, into: dict[str, float]) -> Iterator[None]:
    """The syscalls of the process's event-loop thread (its main thread; the others are
    idle pools) while the block runs (perf's tracepoints, enabled and disabled around
    it), by name. `eintr`: waits that a stop signal ended (the batch-8 cases stop the
    process twice a round), counted in `total` and in their own syscall's count."""
    events = ["raw_syscalls:sys_enter", *(f"syscalls:sys_enter_{name}" for name in SYSCALLS)]
    argv = ["perf", "stat", "-x,", "-t", str(pid), "-D", "-1"]
    for event in events:
        argv += ["-e", event]
    for wait in ("epoll_wait", "epoll_pwait"):
        argv += ["-e", f"syscalls:sys_exit_{wait}", "--filter", "ret == -4"]
    ctl_r, ctl_w = os.pipe()
    ack_r, ack_w = os.pipe()
    perf = subprocess.Popen([*argv, "--control", f"fd:{ctl_r},{ack_w}"],
                            pass_fds=(ctl_r, ack_w), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    os.close(ctl_r)
    os.close(ack_w)

    def command(word: str) -> None:
        os.write(ctl_w, word.encode() + b"\n")
        os.read(ack_r, 16)

    try:
        time.sleep(0.5)  # perf attaches
        command("enable")
        yield
        command("disable")
    finally:
        perf.send_signal(signal.SIGINT)
        _, err = perf.communicate(timeout=60)
        os.close(ctl_w)
        os.close(ack_r)
    for line in err.splitlines():
        parts = line.split(",")
        if len(parts) > 2 and parts[0].strip().isdigit():
            name = parts[2].split(":")[-1].replace("sys_enter_", "")
            if name.startswith("sys_exit_"):
                name = "eintr"
            elif name == "sys_enter":
                name = "total"
            into[name] = into.get(name, 0) + int(parts[0])


def last_dump_instructions(pid: int, dump_dir: Path) -> int:
    dumps = sorted(dump_dir.glob(f"callgrind.out.{pid}.*"),
                   key=lambda p: int(p.name.rsplit(".", 1)[1]))
    for line in dumps[-1].read_text().splitlines():
        if line.startswith(("totals:", "summary:")):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {dumps[-1]}")


# ---- the cases -------------------------------------------------------------------------

@dataclass
class Case:
    name: str
    path: str
    batch: int
    counts: dict[str, float] = field(default_factory=dict)


CASES = [Case("proxied /me, batch 1", ME, 1), Case("proxied /me, batch 8", ME, 8),
         Case("ping, batch 1", PING, 1), Case("ping, batch 8", PING, 8)]


@contextlib.contextmanager
def warmed(gateway: Gateway, case: Case, requests: int, warmup: int, space_ms: float
           ) -> Iterator[tuple[Lockstep, int]]:
    """The case's stub and clients, warmed up, and how many requests to measure (whole
    rounds)."""
    if case.path == ME:
        gateway.start_upstream(batch=case.batch, delay_ms=space_ms)
    client = Lockstep(gateway, case.path, case.batch, space_ms)
    try:
        client.run(warmup)
        yield client, max(1, requests // case.batch) * case.batch
    finally:
        client.close()


def _callgrind(command: str, pid: int) -> None:
    subprocess.run(["callgrind_control", command, str(pid)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run_lockstep(gateway: Gateway, requests: int, warmup: int, *, instructions: bool,
                 dump_dir: Path | None, space_ms: float) -> list[Case]:
    """Every case in lockstep; with `space_ms`, the stub answers that late and the client
    waits that long before its next round, so that the gateway has always finished
    (and sleeps) before anything new arrives: its loop's turns per request are then
    the code's, not the machine's timing."""
    cases = [Case(c.name, c.path, c.batch) for c in CASES]
    idle_rate = 0.0
    if instructions:  # what the timers cost while nothing happens, per second
        assert dump_dir is not None
        _callgrind("-z", gateway.pid)
        time.sleep(10)
        _callgrind("-d", gateway.pid)
        idle_rate = last_dump_instructions(gateway.pid, dump_dir) / 10
        print(f"  idle: {idle_rate:,.0f} instructions per second", flush=True)
    for case in cases:
        with warmed(gateway, case, requests, warmup, space_ms) as (client, n):
            if instructions:
                assert dump_dir is not None
                _callgrind("-z", gateway.pid)
                started = time.monotonic()
                client.run(n)
                elapsed = time.monotonic() - started
                _callgrind("-d", gateway.pid)
                total = last_dump_instructions(gateway.pid, dump_dir)
                case.counts["instructions"] = total / n
                # Less the timers' share over the window (slow under callgrind).
                case.counts["net"] = (total - idle_rate * elapsed) / n
                case.counts["window_s"] = elapsed
            else:
                before = proc_counters(gateway.pid)
                counts: dict[str, float] = {}
                with syscall_counts(gateway.pid, counts):
                    client.run(n)
                after = proc_counters(gateway.pid)
                case.counts.update({k: v / n for k, v in counts.items()})
                case.counts["wakeups"] = (after["wakeups"] - before["wakeups"]) / n
                case.counts["cpu_us"] = (after["cpu_s"] - before["cpu_s"]) / n * 1e6
        print(f"  {case.name}: " + ", ".join(f"{k} {v:,.2f}" for k, v in case.counts.items()),
              flush=True)
    if instructions:
        cases.append(Case("idle (timers), per second", "", 0, {"instructions": idle_rate}))
    return cases


def run_calls(gateway: Gateway, requests: int, warmup: int, space_ms: float
              ) -> dict[str, dict[str, float]]:
    """Function calls per request (Python and C, the event loop's thread), by function,
    for each case: what a request runs, whatever the machine's speed."""
    assert gateway.calls_file is not None
    out: dict[str, dict[str, float]] = {}
    for case in CASES:
        with warmed(gateway, case, requests, warmup, space_ms) as (client, n):
            gateway.calls_file.unlink(missing_ok=True)
            os.kill(gateway.pid, signal.SIGUSR1)
            time.sleep(0.2)
            client.run(n)
            os.kill(gateway.pid, signal.SIGUSR2)
            client.run(case.batch)  # the handler runs once the loop wakes
            deadline = time.monotonic() + 30
            while not gateway.calls_file.exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(0.2)
            calls = json.loads(gateway.calls_file.read_text())
        out[case.name] = {name: count / n for name, count in calls.items()}
        python = sum(v for k, v in out[case.name].items() if not k.startswith("C:"))
        c_calls = sum(v for k, v in out[case.name].items() if k.startswith("C:"))
        print(f"  {case.name}: {python:,.1f} Python and {c_calls:,.1f} C calls per request",
              flush=True)
    return out


def run_free(gateway: Gateway, seconds: int) -> list[Case]:
    """wrk at 8 connections: the stub answering at once, or one request after the other
    at 1 and 2 ms each (a single-process service such as auth at ~1,000 and ~500
    requests/s), and ping."""
    from bench import wrk

    cases = []
    for name, path, service in (("proxied /me, upstream at once", ME, 0.0),
                                ("proxied /me, upstream 1 ms each", ME, 1.0),
                                ("proxied /me, upstream 2 ms each", ME, 2.0),
                                ("ping", PING, None)):
        if service is not None:
            gateway.start_upstream(service_ms=service)
        url = f"http://127.0.0.1:{gateway.port}{path}"
        token = gateway.token if path == ME else None
        wrk.run(url, token=token, connections=8, seconds=1)  # warm
        before = proc_counters(gateway.pid)
        counts: dict[str, float] = {}
        with syscall_counts(gateway.pid, counts):
            result = wrk.run(url, token=token, connections=8, seconds=seconds)
        after = proc_counters(gateway.pid)
        n = max(result.requests, 1)
        case = Case(name, path, 8, {k: v / n for k, v in counts.items()})
        case.counts["wakeups"] = (after["wakeups"] - before["wakeups"]) / n
        case.counts["cpu_us"] = (after["cpu_s"] - before["cpu_s"]) / n * 1e6
        case.counts["rps"] = result.rps
        case.counts["p50_ms"] = result.p50_ms
        cases.append(case)
        print(f"  {case.name}: " + ", ".join(f"{k} {v:,.2f}" for k, v in case.counts.items()),
              flush=True)
    return cases


def report(title: str, cases: list[Case]) -> None:
    keys = [k for k in ("instructions", "net", "total", "epoll_wait", "epoll_pwait", "eintr",
                        "read", "write", "writev", "recvfrom", "sendto", "epoll_ctl", "poll",
                        "wakeups", "cpu_us", "rps", "p50_ms")
            if any(k in c.counts for c in cases)]
    print(f"\n{title}")
    print(f"{'case':<36}" + "".join(f"{k:>13} " for k in keys))
    for c in cases:
        print(f"{c.name:<36}" + "".join(
            f"{c.counts[k]:13,.2f} " if k in c.counts else f"{'-':>13} " for k in keys))


def main() -> None:
    parser = argparse.ArgumentParser(description="the gateway's cost per request, counted")
    parser.add_argument("--tree", type=Path, default=ROOT,
                        help="checkout whose gateway is measured (default: this one)")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--callgrind", action="store_true",
                        help="also count instructions under valgrind's callgrind (slow)")
    parser.add_argument("--no-syscalls", action="store_true",
                        help="skip the native lockstep pass (syscalls, wake-ups)")
    parser.add_argument("--free", type=int, default=0, metavar="SECONDS",
                        help="also load it with wrk for this long per case")
    parser.add_argument("--space-ms", type=float, default=3.0,
                        help="native lockstep: the stub answers, and the client asks again, "
                             "this long after (0: at once, as fast as the machine goes)")
    parser.add_argument("--callgrind-space-ms", type=float, default=0.0,
                        help="the same under callgrind (about 50 times slower)")
    parser.add_argument("--calls", action="store_true",
                        help="count function calls per request instead (sys.setprofile)")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the JSON goes")
    args = parser.parse_args()
    tree = args.tree.resolve()
    results: dict[str, object] = {"tree": str(tree), "loop": args.loop,
                                  "requests": args.requests, "warmup": args.warmup,
                                  "space_ms": args.space_ms,
                                  "callgrind_space_ms": args.callgrind_space_ms}
    with tempfile.TemporaryDirectory(prefix="igny8-gwcount-") as tmp:
        work = Path(tmp)
        if args.calls:
            gateway = Gateway(tree, args.loop, None, calls_file=work / "calls.json")
            try:
                gateway.start(work)
                print("lockstep, native: function calls", flush=True)
                results["calls"] = run_calls(gateway, args.requests, args.warmup,
                                             args.space_ms)
            finally:
                gateway.close()
        elif not args.no_syscalls or args.free:
            gateway = Gateway(tree, args.loop, None)
            try:
                gateway.start(work)
                if not args.no_syscalls:
                    print("lockstep, native: syscalls and wake-ups", flush=True)
                    lockstep = run_lockstep(gateway, args.requests, args.warmup,
                                            instructions=False, dump_dir=None,
                                            space_ms=args.space_ms)
                    report("per request, native (lockstep)", lockstep)
                    results["lockstep"] = {c.name: c.counts for c in lockstep}
                if args.free:
                    print(f"free, wrk at 8 connections, {args.free} s", flush=True)
                    free = run_free(gateway, args.free)
                    report("per request, native (wrk, 8 connections)", free)
                    results["free"] = {c.name: c.counts for c in free}
            finally:
                gateway.close()
        if args.callgrind:
            dumps = work / "callgrind"
            dumps.mkdir()
            gateway = Gateway(tree, args.loop, dumps)
            try:
                print("lockstep, callgrind: instructions (starting takes minutes)", flush=True)
                gateway.start(work)
                counted = run_lockstep(gateway, args.requests, args.warmup,
                                       instructions=True, dump_dir=dumps,
                                       space_ms=args.callgrind_space_ms)
                report("per request, callgrind (lockstep)", counted)
                results["callgrind"] = {c.name: c.counts for c in counted}
            finally:
                gateway.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
