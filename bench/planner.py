"""Planner under load: an account holding 1,000,000 keywords.

    python -m bench.planner [--keywords 1000000] [--duration 10] [--import-rows 100000]

Starts embedded PostgreSQL and NATS, migrates planner's database, loads the keywords
(COPY, then VACUUM ANALYZE as autovacuum would), runs the planner API with uvicorn in a
child process, and measures with wrk at 1 and 8 connections:

  (a) the default first page;
  (b) search=best&volume_min=100&ordering=-volume&page_size=25;
  (c) status=active&page=500;

each with its exact count (checked against COUNT(*) in SQL). Then times a CSV import of a
100,000-row file through the API. Goals: p50 <= 25 ms at one connection, >= 150 req/s at
eight, import >= 20,000 rows/s. Results are printed and written to bench/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench import wrk
from libs.common.embedded import EmbeddedNats, EmbeddedPostgres, free_port, port_open
from libs.common.provision import provision_service_database
from libs.common.testing.tokens import TestIssuer

MIGRATIONS = Path(__file__).resolve().parents[1] / "services" / "planner" / "migrations"
ACCOUNT, SITE, SECTORS = 7001, 70010, (700101, 700102, 700103, 700104, 700105)

MODIFIERS = ["best", "cheap", "top", "how to choose", "buy", "review", "vs", "for beginners",
             "near me", "online", "guide", "ideas", "2025", "for women", "for men", "affordable",
             "professional", "diy", "under 100", "alternatives", "free", "how to use",
             "what is", "benefits of", "types of", "easy", "small", "portable", "used",
             "luxury"]
TOPICS = ["running shoes", "coffee grinder", "espresso machine", "standing desk", "yoga mat",
          "air fryer", "gaming chair", "robot vacuum", "electric bike", "noise cancelling",
          "mechanical keyboard", "hiking boots", "camping tent", "water filter", "smart watch",
          "dog food", "cat litter", "protein powder", "office chair", "blender", "drone",
          "baby stroller", "car seat", "winter jacket", "rain boots", "backpack", "desk lamp",
          "wireless earbuds", "phone case", "laptop stand"]
QUALIFIERS = ["", "", "", "red", "black", "large", "mini", "pro", "wooden", "steel", "kids",
              "outdoor", "indoor", "budget", "premium"]


def generate_keywords(n: int, seed: int = 8) -> list[tuple[str, int, int, str, str]]:
    """Distinct, realistic-looking keywords: modifier + qualifier + topic + suffix id."""
    rng = random.Random(seed)
    intents = ["informational", "commercial", "transactional", "navigational"]
    statuses = ["active"] * 6 + ["mapped"] * 3 + ["archived"]
    rows = []
    for i in range(n):
        words = [rng.choice(MODIFIERS), rng.choice(QUALIFIERS), rng.choice(TOPICS)]
        text = " ".join(w for w in words if w) + f" {i:x}"
        volume = int(rng.paretovariate(0.8) * 20) % 200_000
        rows.append((text, volume, rng.randint(0, 100), rng.choice(intents),
                     rng.choice(statuses)))
    return rows


def load(owner_url: str, n: int) -> None:
    rows = generate_keywords(n)
    started = time.perf_counter()
    with psycopg.connect(owner_url) as conn:
        conn.execute("SELECT set_config('igny8.all_accounts', 'on', false)")
        conn.execute("INSERT INTO sites (id, account_id, name, slug, is_active, deleted)"
                     " VALUES (%s, %s, 'Bench', 'bench', true, false)", (SITE, ACCOUNT))
        for sector in SECTORS:
            conn.execute("INSERT INTO sectors (id, account_id, site_id, name, slug, is_active,"
                         " deleted) VALUES (%s, %s, %s, 'S', 's', true, false)",
                         (sector, ACCOUNT, SITE))
        with conn.cursor() as cur, cur.copy(
            "COPY keywords (account_id, site_id, sector_id, keyword, volume, difficulty, intent,"
            " status, disabled, created_at, updated_at) FROM STDIN"
        ) as copy:
            base = time.time() - n
            for i, (text, volume, difficulty, intent, status) in enumerate(rows):
                ts = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(base + i))
                copy.write_row((ACCOUNT, SITE, SECTORS[i % len(SECTORS)], text, volume,
                                difficulty, intent, status, False, ts + "+00", ts + "+00"))
        conn.commit()
    with psycopg.connect(owner_url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) keywords")
        conn.execute("VACUUM (ANALYZE) keyword_counts")
    print(f"loaded {n:,} keywords in {time.perf_counter() - started:.1f}s", flush=True)


def exact_counts(owner_url: str) -> dict[str, int]:
    with psycopg.connect(owner_url) as conn:
        q = "SELECT count(*) FROM keywords WHERE account_id = %s AND deleted_at IS NULL"
        return {
            "a": conn.execute(q, (ACCOUNT,)).fetchone()[0],  # type: ignore[index]
            "b": conn.execute(q + " AND keyword ILIKE '%%best%%' AND volume >= 100",
                              (ACCOUNT,)).fetchone()[0],  # type: ignore[index]
            "c": conn.execute(q + " AND status = 'active'",
                              (ACCOUNT,)).fetchone()[0],  # type: ignore[index]
        }


def wrk_case(url: str, token: str, connections: int, duration: int) -> dict[str, float]:
    result = wrk.run(url, token=token, connections=connections, seconds=duration,
                     threads=min(connections, 4))
    return {"p50_ms": result.p50_ms, "p99_ms": result.p99_ms, "rps": result.rps,
            "errors": result.non_2xx + result.errors}


def import_csv(base: str, token: str, rows: int) -> dict[str, Any]:
    lines = ["keyword,volume,difficulty,intent,status"]
    rng = random.Random(3)
    for i in range(rows):
        lines.append(f"import {rng.choice(TOPICS)} {i},{rng.randint(0, 5000)},"
                     f"{rng.randint(0, 100)},commercial,active")
    data = ("\n".join(lines) + "\n").encode()
    started = time.perf_counter()
    r = httpx.post(f"{base}/api/v1/planner/keywords/import_keywords/",
                   headers={"Authorization": f"Bearer {token}"},
                   files={"file": ("k.csv", data, "text/csv")},
                   data={"site_id": str(SITE), "sector_id": str(SECTORS[0])}, timeout=600)
    elapsed = time.perf_counter() - started
    r.raise_for_status()
    report = r.json()
    return {"rows": rows, "seconds": round(elapsed, 2), "rows_per_s": round(rows / elapsed),
            "imported": report["imported"], "failed": report["failed"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keywords", type=int, default=1_000_000)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--import-rows", type=int, default=100_000)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="igny8-bench-planner-"))
    pg, nats = EmbeddedPostgres(workdir / "pg"), EmbeddedNats(workdir / "nats")
    pg.start()
    nats.start()
    server: subprocess.Popen[bytes] | None = None
    try:
        db = provision_service_database(pg.url, "planner", MIGRATIONS, app_password="bench")
        load(db.owner_url, args.keywords)
        counts = exact_counts(db.owner_url)
        issuer = TestIssuer()
        port = free_port()
        env = {**os.environ, "IGNY8_DATABASE_URL": db.app_url, "IGNY8_NATS_URL": nats.url,
               "IGNY8_ENVIRONMENT": "test", "IGNY8_LOG_LEVEL": "WARNING",
               "IGNY8_DB_POOL_SIZE": "10", "BENCH_JWKS": json.dumps(issuer.jwks())}
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "bench.planner:bench_app", "--factory",
             "--port", str(port), "--log-level", "warning", "--no-access-log", "--loop",
             "uvloop"], env=env)
        deadline = time.time() + 60
        while not port_open(port):
            if time.time() > deadline or server.poll() is not None:
                raise RuntimeError("planner did not start")
            time.sleep(0.1)
        token = issuer.issue(user_id=1, account_id=ACCOUNT, role="owner", ttl=3600)
        base = f"http://127.0.0.1:{port}"
        cases = {
            "a": "/api/v1/planner/keywords/",
            "b": "/api/v1/planner/keywords/?search=best&volume_min=100&ordering=-volume"
                 "&page_size=25",
            "c": "/api/v1/planner/keywords/?status=active&page=500",
        }
        results: dict[str, Any] = {"keywords": args.keywords, "cases": {}}
        for name, path in cases.items():
            answer = httpx.get(base + path, headers={"Authorization": f"Bearer {token}"},
                               timeout=30).json()
            assert answer["count"] == counts[name], (name, answer["count"], counts[name])
            case: dict[str, Any] = {"path": path, "count": answer["count"]}
            for conns in (1, 8):
                wrk_case(base + path, token, conns, 2)  # warm up
                case[f"c{conns}"] = wrk_case(base + path, token, conns, args.duration)
            results["cases"][name] = case
            print(f"({name}) count={answer['count']:,}  "
                  f"1 conn: p50 {case['c1']['p50_ms']:.1f} ms p99 {case['c1']['p99_ms']:.1f} ms "
                  f"{case['c1']['rps']:.0f} req/s | 8 conns: p50 {case['c8']['p50_ms']:.1f} ms "
                  f"p99 {case['c8']['p99_ms']:.1f} ms {case['c8']['rps']:.0f} req/s "
                  f"(errors {case['c1']['errors'] + case['c8']['errors']})", flush=True)
        if args.import_rows:
            results["import"] = import_csv(base, token, args.import_rows)
            print(f"import: {results['import']}", flush=True)
        out = Path(__file__).parent / "results"
        out.mkdir(exist_ok=True)
        (out / "planner.json").write_text(json.dumps(results, indent=2))
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
        nats.stop()
        pg.stop()


def bench_app() -> Any:
    """The planner app for the bench's uvicorn child: keys from the bench's test issuer
    (no auth service running), everything else from the environment."""
    from services.planner.main import create_app

    keys = json.loads(os.environ["BENCH_JWKS"])

    async def fetch() -> dict[str, Any]:
        return dict(keys)

    return create_app(keys_fetcher=fetch)


if __name__ == "__main__":
    main()
