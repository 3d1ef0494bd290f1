"""Builds keywords_A.csv, intent_A.csv and topic_industry_A.json from the hand-written
src_*.txt files (run from this folder)."""

import csv
import json

CODES = {"I": "informational", "N": "navigational", "C": "commercial", "T": "transactional"}


def build_keywords() -> dict[str, str]:
    rows: list[dict[str, object]] = []
    topic_industry: dict[str, str] = {}
    industry = topic = page = ""
    with open("src_keywords_A.txt", encoding="utf-8") as source:
        for raw in source:
            line = raw.rstrip("\n")
            if not line.strip() or line.startswith(("# Hand", "# Format")):
                continue
            if line.startswith("@ "):
                industry = line[2:]
            elif line.startswith("## "):
                page = line[3:]
            elif line.startswith("# "):
                topic = line[2:]
                topic_industry[topic] = industry
            else:
                keyword, intent, volume = line.split("|")
                rows.append({"keyword": keyword, "topic": topic, "page": page,
                             "intent": CODES[intent], "volume": int(volume)})
    with open("keywords_A.csv", "w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=["keyword", "topic", "page", "intent", "volume"])
        writer.writeheader()
        writer.writerows(rows)
    return topic_industry


def build_intents() -> None:
    rows: list[dict[str, str]] = []
    intent = ""
    with open("src_intent_A.txt", encoding="utf-8") as source:
        for raw in source:
            line = raw.strip()
            if line.startswith("# "):
                intent = line[2:]
            elif line:
                rows.append({"keyword": line, "intent": intent})
    with open("intent_A.csv", "w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=["keyword", "intent"])
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    topic_industry = build_keywords()
    build_intents()
    with open("topic_industry_A.json", "w", encoding="utf-8") as out:
        json.dump(topic_industry, out, indent=1)
