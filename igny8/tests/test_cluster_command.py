"""`igny8 cluster`: the planner's offline engine on a CSV, without the platform."""

import csv
from pathlib import Path

from typer.testing import CliRunner

from igny8.cli import app


def test_clusters_a_file_and_reports_bad_rows(tmp_path: Path) -> None:
    source = tmp_path / "keywords.csv"
    source.write_text(
        "Keyword,Volume\n"
        "best running shoes,5400\nrunning shoes for women,2900\ncheap running shoes,1300\n"
        "dog food for puppies,1900\nbest dry dog food,2400\ngrain free dog food,1600\n"
        ",100\n"
        "how to train a puppy,4400\npuppy training tips,1300\n"
    )
    out = tmp_path / "out.csv"
    result = CliRunner().invoke(app, ["cluster", str(source), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "keywords in" in result.output
    assert "line 8 skipped" in result.output
    rows = list(csv.DictReader(out.open()))
    assert {r["keyword"] for r in rows} >= {"best running shoes", "best dry dog food"}
    by_keyword = {r["keyword"]: r for r in rows}
    assert by_keyword["best running shoes"]["cluster_id"] != by_keyword["best dry dog food"][
        "cluster_id"]
    assert all(r["intent"] for r in rows)


def test_a_file_without_a_keyword_column_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "bad.csv"
    source.write_text("term,volume\nrunning shoes,10\n")
    result = CliRunner().invoke(app, ["cluster", str(source)])
    assert result.exit_code == 2
    assert "keyword" in result.output.lower()
