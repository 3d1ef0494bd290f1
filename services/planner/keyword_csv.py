"""Keywords as CSV: the import's parsing and validation (line by line, with reasons) and
the export's rows."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from typing import Any

from libs.common.messages import BLANK, INTEGER, invalid_choice, max_length, max_value, min_value
from libs.common.problems import ValidationFailed
from libs.common.repository import Row
from services.planner.intent import Intent, classify_intent
from services.planner.models import KeywordStatus

# keywords.volume is an integer column.
MAX_VOLUME = 2**31 - 1
_INTENTS, _STATUSES = frozenset(Intent), frozenset(KeywordStatus)
EXPORT_COLUMNS = ("id", "keyword", "volume", "difficulty", "intent", "status", "cluster_id",
                  "cluster_name", "seed_keyword_id", "site_id", "sector_id", "created_at")


@dataclass
class ImportReport:
    total_rows: int
    imported: int
    skipped_duplicates: int
    over_limit: int
    failed: int
    errors: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        """`failed` counts the errors answered (the first `import_max_error_rows`)."""
        return {**asdict(self), "failed": len(self.errors)}


ImportRow = tuple[int, str, int, int, str, str]


def parse_keyword_csv(data: bytes) -> tuple[list[ImportRow], list[dict[str, Any]]]:
    """Rows that pass validation (with their line numbers) and the reasons the others fail.

    Header required; `keyword` column required; `volume`, `difficulty`, `intent`, `status`
    optional (defaults 0, 0, the intent rules' answer, active); other columns ignored.
    """
    try:
        content = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValidationFailed.field("file", "The file is not UTF-8 text.") from exc
    reader = csv.reader(io.StringIO(content, newline=""))
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration as exc:
        raise ValidationFailed.field("file", "The file is empty.") from exc
    except csv.Error as exc:
        raise ValidationFailed.field("file", f"Not a CSV file: {exc}") from exc
    if "keyword" not in header:
        raise ValidationFailed.field("file", "The header must name a 'keyword' column.")
    col: dict[str, int] = {
        name: header.index(name)
        for name in ("keyword", "volume", "difficulty", "intent", "status")
        if name in header
    }
    valid: list[ImportRow] = []
    errors: list[dict[str, Any]] = []
    line = reader.line_num
    while True:
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            errors.append({"line": reader.line_num, "errors": {"row": [str(exc)]}})
            line = reader.line_num
            continue
        line_no = line + 1
        line = reader.line_num
        if not any(cell.strip() for cell in record):
            continue
        problems: dict[str, list[str]] = {}

        def cell(name: str, row: list[str] = record) -> str:
            index = col.get(name)
            return row[index].strip() if index is not None and index < len(row) else ""

        keyword = " ".join(cell("keyword").split())
        if not keyword:
            problems["keyword"] = [BLANK]
        elif len(keyword) > 255:
            problems["keyword"] = [max_length(255)]
        elif "\x00" in keyword:  # PostgreSQL text cannot hold it (DRF's CharField message)
            problems["keyword"] = ["Null characters are not allowed."]
        elif "\\" in keyword or "\t" in keyword:
            problems["keyword"] = ["Tabs and backslashes are not allowed."]
        numbers: dict[str, int] = {}
        for name, high in (("volume", MAX_VOLUME), ("difficulty", 100)):
            raw = cell(name).replace(",", "")
            if not raw:
                numbers[name] = 0
                continue
            try:
                number = int(float(raw)) if "." in raw else int(raw)
            except ValueError:
                problems[name] = [INTEGER]
                continue
            if number < 0 or number > high:
                problems[name] = [min_value(0) if number < 0 else max_value(high)]
                continue
            numbers[name] = number
        # No intent given: the rules' answer (services/planner/intent.py).
        intent = cell("intent").lower() or classify_intent(keyword).value
        if intent not in _INTENTS:
            problems["intent"] = [invalid_choice(intent)]
        status = cell("status").lower() or "active"
        if status not in _STATUSES:
            problems["status"] = [invalid_choice(status)]
        if problems:
            errors.append({"line": line_no, "errors": problems})
            continue
        valid.append((line_no, keyword, numbers["volume"], numbers["difficulty"], intent, status))
    return valid, errors




async def export_csv(batches: AsyncIterator[list[Row]]) -> AsyncIterator[bytes]:
    """The header, then one chunk of CSV per batch of keywords."""
    buffer = io.StringIO()
    out = csv.writer(buffer, lineterminator="\n")
    out.writerow(EXPORT_COLUMNS)
    async for batch in batches:
        for row in batch:
            out.writerow([row[c] if c != "created_at" else row[c].isoformat()
                          for c in EXPORT_COLUMNS])
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue().encode()
