"""Sanity checks for keywords_C.csv and intent_C.csv."""

import csv
from collections import Counter, defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
VALID = {"informational", "navigational", "commercial", "transactional"}


def load(name):
    with open(HERE / name, encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        return header, list(reader)


def main():
    header, rows = load("keywords_C.csv")
    assert header == ["keyword", "topic", "page", "intent", "volume"], header
    iheader, irows = load("intent_C.csv")
    assert iheader == ["keyword", "intent"], iheader
    assert len(rows) >= 1100, len(rows)
    assert len(irows) >= 320, len(irows)
    keys = [r[0].strip().lower() for r in rows]
    ikeys = [r[0].strip().lower() for r in irows]
    dup = [k for k, n in Counter(keys).items() if n > 1]
    idup = [k for k, n in Counter(ikeys).items() if n > 1]
    cross = sorted(set(keys) & set(ikeys))
    assert not dup, dup
    assert not idup, idup
    assert not cross, cross
    page_topics = defaultdict(set)
    for keyword, topic, page, intent, volume in rows:
        assert keyword, (topic, page)
        assert topic, keyword
        assert page, keyword
        assert intent in VALID, (keyword, intent)
        assert int(volume) > 0, keyword
        page_topics[page].add(topic)
    bad = {p: t for p, t in page_topics.items() if len(t) != 1}
    assert not bad, bad
    sizes = Counter(r[2] for r in rows)
    assert all(3 <= n <= 15 for n in sizes.values()), sizes
    for keyword, intent in irows:
        assert intent in VALID, (keyword, intent)
    icount = Counter(r[1] for r in irows)
    assert all(icount[i] >= 70 for i in VALID), icount
    print(
        "keywords_C.csv rows",
        len(rows),
        "topics",
        len({r[1] for r in rows}),
        "pages",
        len(page_topics),
    )
    print("intent per keyword row", dict(Counter(r[3] for r in rows)))
    print("intent_C.csv rows", len(irows), dict(icount))
    print("max words", max(len(k.split()) for k in keys))
    print("all checks passed")


if __name__ == "__main__":
    main()
