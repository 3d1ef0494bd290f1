"""Planner under load through the gateway: an account holding 1,000,000 keywords.

    python -m bench.planner [--keywords 1000000] [--duration 10] [--import-rows 100000]

Starts the whole platform with `igny8 up` in a temporary IGNY8_HOME (the gateway's rate
limit for the planner's scope raised so it never trips), registers a user through the
gateway, creates a site with five sectors through auth's API and waits until auth's events
have reached the planner's read models. Then loads the keywords straight into the
planner's database for that account, site and sectors (COPY, then VACUUM ANALYZE as
autovacuum would), and measures with wrk through the gateway at 1 and 8 connections:

  (a) the default first page;
  (b) search=best&volume_min=100&ordering=-volume&page_size=25;
  (c) status=active&page=500;

each with its exact count (checked against COUNT(*) in SQL). Then times a CSV import of a
100,000-row file through the gateway. Goals: p50 <= 25 ms at one connection, >= 150 req/s
at eight, import >= 20,000 rows/s. Results are printed and written to bench/results/.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg.conninfo import make_conninfo

from bench import wrk
from bench.platform import call, login, platform
from gateway.routes import scope_for

LIST = "/api/v1/planner/keywords/"
IMPORT = "/api/v1/planner/keywords/import_keywords/"
SECTORS = 5
# The lists measured: the default first page, a search with filters and an ordering, a
# deep page of a filtered list.
CASES = {
    "a": LIST,
    "b": LIST + "?search=best&volume_min=100&ordering=-volume&page_size=25",
    "c": LIST + "?status=active&page=500",
}


@dataclass
class Target:
    """Where the keywords go: the bench user's account, its site and sectors."""

    account_id: int
    site_id: int
    sector_ids: list[int]


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


def load(planner_url: str, target: Target, n: int) -> None:
    rows = generate_keywords(n)
    started = time.perf_counter()
    with psycopg.connect(planner_url) as conn:
        conn.execute("SELECT set_config('igny8.all_accounts', 'on', false)")
        with conn.cursor() as cur, cur.copy(
            "COPY keywords (account_id, site_id, sector_id, keyword, volume, difficulty, intent,"
            " status, disabled, created_at, updated_at) FROM STDIN"
        ) as copy:
            base = time.time() - n
            sectors = target.sector_ids
            for i, (text, volume, difficulty, intent, status) in enumerate(rows):
                ts = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(base + i))
                copy.write_row((target.account_id, target.site_id, sectors[i % len(sectors)],
                                text, volume, difficulty, intent, status, False, ts + "+00",
                                ts + "+00"))
        conn.commit()
    with psycopg.connect(planner_url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) keywords")
        conn.execute("VACUUM (ANALYZE) keyword_counts")
    print(f"loaded {n:,} keywords in {time.perf_counter() - started:.1f}s", flush=True)


def make_room(planner_url: str, target: Target, keywords: int) -> None:
    """No plan holds a million keywords: give the bench account's plan, in the planner's
    read model of auth's plans, a keyword limit just large enough for the bench (the limit
    is still checked on every import, as in production)."""
    with psycopg.connect(planner_url) as conn:
        conn.execute("SELECT set_config('igny8.all_accounts', 'on', false)")
        updated = conn.execute(
            "UPDATE plans SET max_keywords = %s"
            " WHERE id = (SELECT plan_id FROM accounts WHERE account_id = %s)",
            (keywords, target.account_id)).rowcount
        conn.commit()
    print(f"keyword limit of the bench account's plan: {keywords:,} ({updated} plan)",
          flush=True)


def exact_counts(planner_url: str, account_id: int) -> dict[str, int]:
    with psycopg.connect(planner_url) as conn:
        q = "SELECT count(*) FROM keywords WHERE account_id = %s AND deleted_at IS NULL"
        return {
            "a": conn.execute(q, (account_id,)).fetchone()[0],  # type: ignore[index]
            "b": conn.execute(q + " AND keyword ILIKE '%%best%%' AND volume >= 100",
                              (account_id,)).fetchone()[0],  # type: ignore[index]
            "c": conn.execute(q + " AND status = 'active'",
                              (account_id,)).fetchone()[0],  # type: ignore[index]
        }


def _data(body: Any) -> Any:
    return body["data"] if isinstance(body, dict) and "data" in body else body


def set_up_account(api: str, planner_url: str) -> tuple[str, Target]:
    """A user, a site and its sectors, made through the gateway by auth; returned once
    auth's events have put them into the planner's read models."""
    token = login(api, f"bench-planner-{int(time.time())}@example.com")
    me = _data(call(f"{api}auth/me/", token=token))["user"]
    site = _data(call(f"{api}auth/sites/", {"name": "Bench site"}, token=token))
    sector_ids = [_data(call(f"{api}auth/sectors/", {"site_id": site["id"],
                                                     "name": f"Bench sector {n}"},
                             token=token))["id"] for n in range(SECTORS)]
    target = Target(int(me["account_id"]), int(site["id"]), [int(s) for s in sector_ids])
    deadline = time.monotonic() + 60
    with psycopg.connect(planner_url, autocommit=True) as conn:
        while True:
            known = conn.execute(
                "SELECT (SELECT count(*) FROM accounts WHERE account_id = %s)"
                " + (SELECT count(*) FROM sites WHERE id = %s AND account_id = %s)"
                " + (SELECT count(*) FROM sectors WHERE site_id = %s AND id = ANY(%s))",
                (target.account_id, target.site_id, target.account_id, target.site_id,
                 target.sector_ids),
            ).fetchone()
            if known is not None and known[0] == 2 + SECTORS:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("auth's site and sectors never reached the planner")
            time.sleep(0.2)
    return token, target


def wrk_case(url: str, token: str, connections: int, duration: int) -> dict[str, float]:
    result = wrk.run(url, token=token, connections=connections, seconds=duration,
                     threads=min(connections, 4))
    return {"p50_ms": result.p50_ms, "p99_ms": result.p99_ms, "rps": result.rps,
            "errors": result.non_2xx + result.errors}


def keywords_csv(rows: int, prefix: str = "import", seed: int = 3) -> bytes:
    """A CSV import file of `rows` keywords, new to the account when `prefix` is."""
    rng = random.Random(seed)
    lines = ["keyword,volume,difficulty,intent,status"] + [
        f"{prefix} {rng.choice(TOPICS)} {i},{rng.randint(0, 5000)},{rng.randint(0, 100)},"
        "commercial,active" for i in range(rows)]
    return ("\n".join(lines) + "\n").encode()


def import_csv(gateway: str, token: str, target: Target, rows: int) -> dict[str, Any]:
    data = keywords_csv(rows)
    started = time.perf_counter()
    r = httpx.post(gateway + IMPORT, headers={"Authorization": f"Bearer {token}"},
                   files={"file": ("k.csv", data, "text/csv")},
                   data={"site_id": str(target.site_id), "sector_id": str(target.sector_ids[0])},
                   timeout=600)
    elapsed = time.perf_counter() - started
    r.raise_for_status()
    report = _data(r.json())
    assert (report["imported"], report["failed"]) == (rows, 0), report
    return {"rows": rows, "seconds": round(elapsed, 2), "rows_per_s": round(rows / elapsed),
            "imported": report["imported"], "failed": report["failed"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keywords", type=int, default=1_000_000)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--import-rows", type=int, default=100_000)
    args = parser.parse_args()
    wrk.ensure_wrk()
    scopes = {scope_for("GET", LIST), scope_for("POST", IMPORT)}
    assert None not in scopes
    overrides = {str(scope): 1_000_000_000 for scope in scopes}

    with tempfile.TemporaryDirectory(prefix="igny8-bench-planner-") as tmp, \
            platform(Path(tmp), overrides) as run:
        gateway = f"http://127.0.0.1:{run['ports']['gateway']}"
        planner_url = make_conninfo(run["postgres"]["url"], dbname="igny8_planner")
        token, target = set_up_account(gateway + "/api/v1/", planner_url)
        make_room(planner_url, target, args.keywords + args.import_rows)
        load(planner_url, target, args.keywords)
        counts = exact_counts(planner_url, target.account_id)
        results: dict[str, Any] = {"keywords": args.keywords, "through": "gateway",
                                   "cases": {}}
        for name, path in CASES.items():
            answer = _data(httpx.get(gateway + path, headers={"Authorization": f"Bearer {token}"},
                                     timeout=30).json())
            assert answer["count"] == counts[name], (name, answer["count"], counts[name])
            case: dict[str, Any] = {"path": path, "count": answer["count"]}
            for conns in (1, 8):
                wrk_case(gateway + path, token, conns, 2)  # warm up
                case[f"c{conns}"] = wrk_case(gateway + path, token, conns, args.duration)
            results["cases"][name] = case
            print(f"({name}) count={answer['count']:,}  "
                  f"1 conn: p50 {case['c1']['p50_ms']:.1f} ms p99 {case['c1']['p99_ms']:.1f} ms "
                  f"{case['c1']['rps']:.0f} req/s | 8 conns: p50 {case['c8']['p50_ms']:.1f} ms "
                  f"p99 {case['c8']['p99_ms']:.1f} ms {case['c8']['rps']:.0f} req/s "
                  f"(errors {case['c1']['errors'] + case['c8']['errors']})", flush=True)
        if args.import_rows:
            results["import"] = import_csv(gateway, token, target, args.import_rows)
            print(f"import: {results['import']}", flush=True)
        out = Path(__file__).parent / "results"
        out.mkdir(exist_ok=True)
        (out / "planner.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
