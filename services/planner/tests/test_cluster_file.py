"""cluster_csv: the engine on a CSV file, with bad rows and missing columns."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from services.planner.cluster_file import ClusterFileError, cluster_csv


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_clusters_a_file_and_reports_bad_rows(tmp_path: Path) -> None:
    src = write(
        tmp_path / "kw.csv",
        "Volume,KEYWORD,notes\n"
        "900,dog food,a\n"
        "300,best dog food,\n"
        "200,dry dog food,\n"
        "800,cat food,\n"
        "100,wet cat food,\n"
        "50,kitten food,\n"
        "lots,cheap dog food,\n"
        ",,\n"
        "10,   ,\n"
        "5,!!!,\n"
        "7,Dog Food,duplicate\n"
        "1,hiking boots\n",
    )
    progress: list[tuple[int, int]] = []
    report = cluster_csv(src, None, progress=lambda d, t: progress.append((d, t)))
    assert report.output_path == tmp_path / "kw.clustered.csv"
    assert report.keywords == 7
    assert report.duplicates == 1
    assert [s.line for s in report.skipped] == [8, 10, 11]
    assert "not a number" in report.skipped[0].reason
    rows = list(csv.DictReader(report.output_path.open()))
    assert list(rows[0]) == [
        "keyword", "cluster_name", "cluster_id", "topic", "intent", "volume"]
    by_kw = {r["keyword"]: r for r in rows}
    assert by_kw["dog food"]["cluster_id"] == by_kw["dry dog food"]["cluster_id"]
    assert by_kw["dog food"]["cluster_id"] != by_kw["cat food"]["cluster_id"]
    assert by_kw["best dog food"]["intent"] == "commercial"
    assert by_kw["dog food"]["volume"] == "900"
    assert progress[-1][0] == progress[-1][1]
    assert len(progress) >= 3
    assert report.clusters == len({r["cluster_id"] for r in rows})


def test_same_file_same_output(tmp_path: Path) -> None:
    src = write(
        tmp_path / "k.csv",
        "keyword\n"
        + "\n".join(
            [
                "home loans",
                "car loans",
                "auto loan rates",
                "mortgage rates",
                "personal loans",
                "personal loan calculator",
                "car loan calculator",
            ]
        )
        + "\n",
    )
    a = cluster_csv(src, tmp_path / "a.csv")
    b = cluster_csv(src, tmp_path / "b.csv")
    assert a.output_path.read_text() == b.output_path.read_text()


def test_missing_keyword_column_is_named(tmp_path: Path) -> None:
    src = write(tmp_path / "bad.csv", "term,volume\ndog food,10\n")
    with pytest.raises(ClusterFileError, match=r"missing required column 'keyword'.*'term'"):
        cluster_csv(src, None)


def test_empty_and_unusable_files(tmp_path: Path) -> None:
    with pytest.raises(ClusterFileError, match="empty"):
        cluster_csv(write(tmp_path / "e.csv", ""), None)
    with pytest.raises(ClusterFileError, match="no usable keyword rows"):
        cluster_csv(write(tmp_path / "n.csv", "keyword\n!!!\n\n"), None)
    with pytest.raises(ClusterFileError, match="cannot read"):
        cluster_csv(tmp_path / "missing.csv", None)


def test_semicolon_file_without_volume(tmp_path: Path) -> None:
    src = write(tmp_path / "s.csv", "id;Keyword\n1;python tutorial\n2;learn python\n")
    report = cluster_csv(src, tmp_path / "out" / "s.csv")
    assert report.keywords == 2
    assert report.output_path.exists()
