"""Build keywords_C.csv and intent_C.csv from the hand-written sources.

Sources (same folder):
    src_pages.txt   "= industry", "# topic", "## page",
                    then keyword|intent|volume[|tags]; "//" comments
    src_intent.txt  "== section", keyword|intent; "//" comments

The script only converts and validates; every label was written by hand.
"""

import csv
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
INTENTS = {
    "i": "informational",
    "n": "navigational",
    "c": "commercial",
    "t": "transactional",
}
QUESTION_START = re.compile(
    r"^(how|what|whats|what's|why|when|where|which|who|is|are|can|do|does|"
    r"should)\b"
)


def read_pages(path):
    """Parse src_pages.txt into a list of row dicts."""
    rows = []
    industry = topic = page = None
    with open(path, encoding="utf-8") as handle:
        for lineno, raw in enumerate(handle, start=1):
            line = raw.strip()
            if not line or line.startswith("//"):
                continue
            if line.startswith("= "):
                industry = line[2:].strip()
            elif line.startswith("## "):
                page = line[3:].strip()
            elif line.startswith("# "):
                topic = line[2:].strip()
                page = None
            else:
                parts = line.split("|")
                if len(parts) not in (3, 4) or page is None:
                    sys.exit(f"src_pages.txt:{lineno}: bad line {line!r}")
                tags = parts[3] if len(parts) == 4 else ""
                rows.append(
                    {
                        "industry": industry,
                        "topic": topic,
                        "page": page,
                        "keyword": parts[0].strip(),
                        "intent": INTENTS[parts[1].strip()],
                        "volume": int(parts[2]),
                        "tags": tags,
                    }
                )
    return rows


def read_intents(path):
    """Parse src_intent.txt into (keyword, intent) pairs."""
    pairs = []
    with open(path, encoding="utf-8") as handle:
        for lineno, raw in enumerate(handle, start=1):
            line = raw.strip()
            if not line or line.startswith(("//", "==")):
                continue
            parts = line.split("|")
            if len(parts) != 2:
                sys.exit(f"src_intent.txt:{lineno}: bad line {line!r}")
            pairs.append((parts[0].strip(), INTENTS[parts[1].strip()]))
    return pairs


def write_outputs(rows, pairs):
    with open(HERE / "keywords_C.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["keyword", "topic", "page", "intent", "volume"])
        for row in rows:
            writer.writerow(
                [
                    row["keyword"],
                    row["topic"],
                    row["page"],
                    row["intent"],
                    row["volume"],
                ]
            )
    with open(HERE / "intent_C.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["keyword", "intent"])
        writer.writerows(pairs)


def stats(rows, pairs):
    """Print the counts quoted in README.md."""
    keywords = [row["keyword"] for row in rows]
    pages = Counter(row["page"] for row in rows)
    print("rows", len(rows))
    print("topics", len({row["topic"] for row in rows}))
    print("pages", len(pages))
    print("keywords per page min/max", min(pages.values()), max(pages.values()))
    print("intent", dict(Counter(row["intent"] for row in rows)))
    per_industry = defaultdict(set)
    for row in rows:
        per_industry[row["industry"]].add(row["topic"])
    for name, topics in per_industry.items():
        n_pages = len({r["page"] for r in rows if r["industry"] == name})
        n_rows = sum(1 for r in rows if r["industry"] == name)
        print(f"  {name}: {len(topics)} topics, {n_pages} pages, {n_rows} rows")
    print("misspellings", sum("m" in row["tags"] for row in rows))
    print("location variants", sum("l" in row["tags"] for row in rows))
    print("near me", sum("near me" in k for k in keywords))
    print("questions", sum(bool(QUESTION_START.match(k)) for k in keywords))
    print(
        "comparisons (vs/versus/or)",
        sum(bool(re.search(r"\b(vs|versus)\b", k)) for k in keywords),
    )
    print("long tails 6-9 words", sum(6 <= len(k.split()) <= 9 for k in keywords))
    print("one-word heads", sum(len(k.split()) == 1 for k in keywords))
    print("intent file", len(pairs), dict(Counter(i for _, i in pairs)))


def main():
    rows = read_pages(HERE / "src_pages.txt")
    pairs = read_intents(HERE / "src_intent.txt")
    write_outputs(rows, pairs)
    stats(rows, pairs)


if __name__ == "__main__":
    main()
