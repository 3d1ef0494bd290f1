"""The optimizer's requests: `analyze` (free, synchronous; the score is stored on the
content) and `optimize` (a billed job, 1 credit per 200 words)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from libs.common.ai_jobs import QueuedJob
from libs.common.repository import Row
from services.writer.brief import is_question
from services.writer.events import OPTIMIZE
from services.writer.optimizer import ContentInput, analyze_content
from services.writer.service.tasks import ContentService


def site_host(site: Row | None) -> str | None:
    """The site's host name, which tells internal links from outbound ones."""
    url = (site or {}).get("url") or ""
    return urlsplit(url if "//" in url else f"//{url}").hostname or None


def content_input(content: Row, host: str | None) -> ContentInput:
    """A stored content as the optimizer reads it: its keyphrase is its primary keyword
    (its title when it has none); keywords phrased as questions are expected in the FAQ."""
    keywords = [str(k) for k in content.get("secondary_keywords") or ()]
    return ContentInput(
        html=content["html"], keyphrase=content["primary_keyword"] or content["title"],
        meta_title=content["meta_title"], meta_description=content["meta_description"],
        slug=content["slug"], title=content["title"],
        secondary=tuple(k for k in keywords if not is_question(k)),
        questions=tuple(k for k in keywords if is_question(k)), site_host=host)


class OptimizerService(ContentService):
    async def analyze(self, content_id: int) -> dict[str, Any]:
        """Score a content now and keep the score (and the checks) on it."""
        content = await self.get(content_id)
        site = await self.access.repo.site(self.account_id, content["site_id"])
        analysis = analyze_content(content_input(content, site_host(site))).as_dict()
        await (await self.rows()).update(content_id, {
            "optimizer_score": analysis["score"], "optimizer_analysis": analysis})
        return analysis

    async def request_optimize(self, ids: Sequence[int], run_id: str | None = None
                               ) -> QueuedJob:
        """Queue `optimize`: each content holds its length's credits (1 per 200 words)."""
        wanted = self.limited(ids, self.settings.optimize_max_content)
        found = await self.all_of(wanted)
        return await self.queue(OPTIMIZE, {"content_ids": wanted, "run_id": run_id},
                                items={str(c["id"]): max(int(c["word_count"]), 1)
                                       for c in found})
