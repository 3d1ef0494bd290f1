"""Build keywords_B.csv from the hand-written keywords_B_source.txt.

Labels (topic, page, intent) come only from the source file. The script only
adds a plausible monthly volume: the head term (first keyword of a page) gets
the page's hand-set head volume; variants get a deterministic fraction of it,
misspellings a small fraction, long tails (6+ words) are capped at 210.
"""
import csv
import hashlib
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "keywords_B_source.txt")
OUT = os.path.join(HERE, "keywords_B.csv")
INTENTS = {"informational", "navigational", "commercial", "transactional"}
BUCKETS = [10, 20, 30, 40, 50, 70, 90, 110, 140, 170, 210, 260, 320, 390, 480,
           590, 720, 880, 1000, 1300, 1600, 1900, 2400, 2900, 3600, 4400, 5400,
           6600, 8100, 9900, 12100, 14800, 18100, 22200, 27100, 33100, 40500,
           49500, 60500, 74000, 90500, 110000, 135000, 165000, 201000, 246000,
           301000, 368000, 450000, 550000, 673000]


def h(s, salt=""):
    return int(hashlib.md5((salt + s).encode(), usedforsecurity=False).hexdigest(), 16)


def snap(v):
    return min(BUCKETS, key=lambda b: abs(b - v))


def variant_volume(kw, head_vol, misspelled):
    words = len(kw.split())
    spread = (h(kw) % 1000) / 1000
    frac = 0.004 + spread * 0.03 if misspelled else 0.03 + spread * 0.30
    v = head_vol * frac
    if words >= 6:
        v = min(v, 10 + h(kw, "lt") % 200)
    return max(10, snap(v))


def parse():
    rows, topic, page, intent, head_vol, first = [], None, None, None, None, False
    with open(SRC, encoding="utf-8") as f:
        for ln, line in enumerate(f, 1):
            line = line.strip()
            if not line or (line.startswith("#") and "|" not in line):
                continue
            if line.startswith("= "):
                topic = line[2:].strip()
                continue
            if line.startswith("# "):
                name, intent, vol = [x.strip() for x in line[2:].split("|")]
                assert intent in INTENTS, (ln, intent)
                page, head_vol, first = name, int(vol), True
                continue
            kw_intent = intent
            if " ! " in line:
                line, kw_intent = [x.strip() for x in line.split(" ! ")]
                assert kw_intent in INTENTS, (ln, kw_intent)
            misspelled = line.startswith("~")
            kw = line.lstrip("~").strip()
            vol = head_vol if first else variant_volume(kw, head_vol, misspelled)
            first = False
            rows.append(dict(keyword=kw, topic=topic, page=page, intent=kw_intent,
                             volume=vol, misspelled=misspelled))
    return rows


def main():
    rows = parse()
    seen = {}
    for r in rows:
        k = r["keyword"].lower()
        if k in seen:
            sys.exit(f"DUPLICATE: {k!r} in {seen[k]} and {r['page']}")
        seen[k] = r["page"]
    with open(OUT, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["keyword", "topic", "page", "intent", "volume"])
        for r in rows:
            w.writerow([r["keyword"], r["topic"], r["page"], r["intent"], r["volume"]])
    print(f"wrote {len(rows)} rows to {OUT}")
    print("misspellings:", sum(r["misspelled"] for r in rows))
    build_intent()


def build_intent():
    """intent_B.csv from intent_B_source.txt ("## intent" section headers)."""
    rows, cur = [], None
    with open(os.path.join(HERE, "intent_B_source.txt"), encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            if line.startswith("## "):
                cur = line[3:].strip()
                assert cur in INTENTS, cur
                continue
            rows.append((line, cur))
    with open(os.path.join(HERE, "intent_B.csv"), "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["keyword", "intent"])
        w.writerows(rows)
    print(f"wrote {len(rows)} rows to intent_B.csv")


if __name__ == "__main__":
    main()
