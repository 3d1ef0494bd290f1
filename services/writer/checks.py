"""One check's verdict, and how verdicts add up to a score.

Each check scores like a Yoast assessment: 9 points when good, 6 when ok, 3 when bad
(0 for the severe cases where Yoast goes below zero, e.g. a text under 200 words or a
keyphrase stuffed above 4 %). The score is the share of the points available, 0-100,
the way Yoast's overall score is `sum(scores) / (9 x assessments)`. A check that is not
good carries a `fix`: every lost point names what would win it back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

Status = Literal["good", "ok", "bad"]
Group = Literal["seo", "readability", "answer", "coverage"]
MAX_POINTS = 9
POINTS: dict[Status, int] = {"good": 9, "ok": 6, "bad": 3}


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    group: Group
    status: Status
    message: str
    fix: str
    points: int
    max_points: int = MAX_POINTS

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def good(name: str, group: Group, message: str) -> Check:
    return Check(name, group, "good", message, "", POINTS["good"])


def ok(name: str, group: Group, message: str, fix: str) -> Check:
    return Check(name, group, "ok", message, fix, POINTS["ok"])


def bad(name: str, group: Group, message: str, fix: str, *, severe: bool = False) -> Check:
    return Check(name, group, "bad", message, fix, 0 if severe else POINTS["bad"])


def score(checks: Sequence[Check]) -> int:
    """0-100: the points won over the points available."""
    available = sum(c.max_points for c in checks)
    if not available:
        return 0
    return round(100 * sum(c.points for c in checks) / available)
