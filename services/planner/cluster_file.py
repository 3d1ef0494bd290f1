"""`igny8 cluster KEYWORDS.csv [-o OUT] [--topics ...]`: the local engine on a CSV file,
no stack needed.

Input: a CSV with a header; a `keyword` column is required (header matched
case-insensitively; `keywords`, `keyword text`, `query`, `search term` are accepted too),
`volume` is optional. Rows with an empty keyword, no letters/digits, or a non-numeric
volume are skipped and reported with their line number. Output: a CSV with
`keyword,cluster_name,cluster_id,topic,intent,volume` (cluster ids 1..n, largest volume
first; a cluster is one page, its topic groups pages), to `output_path` or, when None,
next to the input as `<name>.clustered.csv`. Optional topic anchors: the topics the user
wants, each with optional seed keywords (see `parse_topics`).
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from services.planner.clustering import (
    ClusteringConfig,
    KeywordInput,
    LocalClusteringEngine,
    TopicAnchor,
    normalize_keyword,
)

KEYWORD_HEADERS = ("keyword", "keywords", "keyword text", "query", "search term")
VOLUME_HEADERS = ("volume", "search volume", "avg monthly searches", "monthly volume")
OUTPUT_COLUMNS = ("keyword", "cluster_name", "cluster_id", "topic", "intent", "volume")


class ClusterFileError(ValueError):
    """The file cannot be clustered (missing column, unreadable, no usable rows)."""


@dataclass(frozen=True, slots=True)
class SkippedRow:
    line: int
    reason: str


@dataclass(frozen=True, slots=True)
class ClusterFileReport:
    input_path: Path
    output_path: Path
    keywords: int
    clusters: int
    topics: int
    skipped: tuple[SkippedRow, ...] = field(default_factory=tuple)
    duplicates: int = 0
    model: str = ""


def _find(header: list[str], names: tuple[str, ...]) -> int | None:
    cleaned = [" ".join(h.replace("_", " ").strip().lower().split()) for h in header]
    for name in names:
        if name in cleaned:
            return cleaned.index(name)
    return None


def _parse_volume(raw: str) -> int | None:
    text = raw.strip().replace(",", "").replace("_", "")
    if not text:
        return 0
    try:
        value = float(text)
    except ValueError:
        return None
    if value < 0 or value != value:
        return None
    return int(value)


def read_keywords(input_path: Path) -> tuple[list[KeywordInput], list[SkippedRow], int]:
    try:
        raw = input_path.read_bytes()
    except OSError as exc:
        raise ClusterFileError(f"cannot read {input_path}: {exc.strerror or exc}") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    sample = text[:4096]
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(text.splitlines(), dialect)
    header = next(reader, None)
    if not header:
        raise ClusterFileError(f"{input_path} is empty: expected a header with a 'keyword' column")
    k_col = _find(header, KEYWORD_HEADERS)
    if k_col is None:
        found = ", ".join(repr(h) for h in header) or "none"
        raise ClusterFileError(
            f"{input_path}: missing required column 'keyword' (columns found: {found})"
        )
    v_col = _find(header, VOLUME_HEADERS)
    keywords: list[KeywordInput] = []
    skipped: list[SkippedRow] = []
    seen: set[str] = set()
    duplicates = 0
    for line, row in enumerate(reader, start=2):
        if not row or all(not c.strip() for c in row):
            continue
        text_value = row[k_col].strip() if k_col < len(row) else ""
        if not text_value:
            skipped.append(SkippedRow(line, "empty keyword"))
            continue
        norm = normalize_keyword(text_value)
        if not norm:
            skipped.append(SkippedRow(line, f"keyword {text_value!r} has no letters or digits"))
            continue
        volume = 0
        if v_col is not None and v_col < len(row):
            parsed = _parse_volume(row[v_col])
            if parsed is None:
                skipped.append(SkippedRow(line, f"volume {row[v_col]!r} is not a number >= 0"))
                continue
            volume = parsed
        if norm in seen:
            duplicates += 1
            continue
        seen.add(norm)
        keywords.append(KeywordInput(text=" ".join(text_value.split()), volume=volume, ref=line))
    return keywords, skipped, duplicates


def parse_topics(specs: Sequence[str]) -> list[TopicAnchor]:
    """Topic anchors from the command line: each spec is a topic name, optionally with
    seed keywords after a colon, separated by `|`: "massage chairs" or
    "massage chairs: shiatsu massage chair | zero gravity massage chair". A spec with
    commas and no colon is several topics ("massage chairs, standing desks")."""
    anchors: list[TopicAnchor] = []
    for spec in specs:
        if ":" in spec:
            name, _, seeds = spec.partition(":")
            keywords = tuple(k.strip() for k in seeds.split("|") if k.strip())
            parts = [(name.strip(), keywords)]
        else:
            parts = [(p.strip(), ()) for p in spec.split(",")]
        for name, keywords in parts:
            if not normalize_keyword(name) and not keywords:
                if name or keywords:
                    raise ClusterFileError(f"topic {spec!r} has no letters or digits")
                continue
            anchors.append(TopicAnchor(name, keywords))
    return anchors


def cluster_csv(
    input_path: Path,
    output_path: Path | None,
    *,
    progress: Callable[[int, int], None] | None = None,
    config: ClusteringConfig | None = None,
    topics: Sequence[TopicAnchor] = (),
) -> ClusterFileReport:
    """Cluster the keywords of `input_path` and write one row per keyword.

    `progress(done, total)` reports phases (read, embed, cluster, write): total is 6."""
    total = 6
    keywords, skipped, duplicates = read_keywords(Path(input_path))
    if progress:
        progress(1, total)
    if not keywords:
        raise ClusterFileError(f"{input_path}: no usable keyword rows ({len(skipped)} skipped)")
    out = (
        Path(output_path)
        if output_path is not None
        else Path(input_path).with_suffix(".clustered.csv")
    )
    engine = LocalClusteringEngine(config=config)
    result = engine.cluster(
        keywords,
        anchors=topics,
        progress=(lambda d, t: progress(1 + d, total)) if progress else None,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(OUTPUT_COLUMNS)
        for cluster_id, cluster in enumerate(result.clusters, start=1):
            for member in cluster.keywords:
                writer.writerow(
                    (
                        member.keyword.text,
                        cluster.name,
                        cluster_id,
                        cluster.topic,
                        member.intent.value,
                        member.keyword.volume,
                    )
                )
    if progress:
        progress(total, total)
    return ClusterFileReport(
        input_path=Path(input_path),
        output_path=out,
        keywords=len(keywords),
        clusters=len(result.clusters),
        topics=len({c.topic for c in result.clusters}),
        skipped=tuple(skipped),
        duplicates=duplicates,
        model=result.model,
    )
