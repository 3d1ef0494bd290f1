"""The estimate of a run (`estimate/`, `run_now`'s balance check, the scheduler's): the
work waiting in the site, what it will make for the stages after it, priced by billing.

What one stage makes for the next depends on the keyword list and the engine (bench's
100 keywords of 10 topics made 24 clusters on the offline engines; one sector's mixed
seed keywords made a cluster of 1-2 keywords each, and the estimate said 384 credits for
a run that spent 885). So the ratios are the site's own, measured on its completed runs
(ADR 0035), and the defaults below only until a run has measured them.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from libs.common.billing import BillingClient
from libs.common.pipeline import PipelineClient
from libs.common.repository import Row
from services.automation.schemas import DEFAULT_BATCH, STAGE_NAMES, EstimateOut, StageEstimate

# Each stage's billing operation (billing's cost table) for the estimate.
OPERATIONS = {1: "clustering", 2: "idea_generation", 4: "content_generation",
              5: "image_prompt_extraction", 6: "image_generation"}
# The defaults, as measured by bench.automation on the offline engines (100 keywords of
# 10 topics: 24 clusters, 81 ideas, ~1,720 words and 3 images per article), rounded to
# the safe side.
KEYWORDS_PER_CLUSTER = 4
IDEAS_PER_CLUSTER = 3.5
WORDS_PER_ARTICLE = 1800
IMAGES_PER_ARTICLE = 3
# How many items a stage must have processed over the site's runs before its measured
# ratio replaces the default.
MIN_SAMPLE = 5


def batch_size(config: Row | None, stage: int) -> int:
    sizes = (config or {}).get("batch_sizes") or {}
    return int(sizes.get(str(stage)) or DEFAULT_BATCH[stage])


@dataclass(frozen=True)
class Ratios:
    """What one item of a stage makes for the next."""

    keywords_per_cluster: float = KEYWORDS_PER_CLUSTER
    ideas_per_cluster: float = IDEAS_PER_CLUSTER
    images_per_article: float = IMAGES_PER_ARTICLE

    @classmethod
    def measured(cls, results: Iterable[Mapping[str, Any]]) -> Ratios:
        """The ratios of the site's completed runs (each run's `results`: stage → its
        `processed` and `created`); a stage with too few items keeps the default."""
        made = {s: [0, 0] for s in ("1", "2", "5")}
        for result in results:
            for s, totals in made.items():
                entry = (result or {}).get(s) or {}
                totals[0] += int(entry.get("processed") or 0)
                totals[1] += int(entry.get("created") or 0)

        def ratio(stage: str, default: float, invert: bool = False) -> float:
            processed, created = made[stage]
            if processed < MIN_SAMPLE or created <= 0:
                return default
            return processed / created if invert else created / processed

        return cls(keywords_per_cluster=ratio("1", KEYWORDS_PER_CLUSTER, invert=True),
                   ideas_per_cluster=ratio("2", IDEAS_PER_CLUSTER),
                   images_per_article=ratio("5", IMAGES_PER_ARTICLE))


async def estimate(pipeline: PipelineClient, billing: BillingClient, account_id: int,
                   site_id: int, config: Row | None, margin: float,
                   ratios: Ratios | None = None) -> EstimateOut:
    """What the work waiting in the site would cost: pending items per stage, and what
    they will make for the stages after them (`Ratios`), priced by billing's cost table;
    the balance and whether it covers `margin` x the estimate."""
    r = ratios or Ratios()
    pending = dict(zip(range(1, 8), await asyncio.gather(*(
        pipeline.pending(account_id, site_id, stage=s, limit=0) for s in range(1, 8))),
        strict=True))
    counts = {s: p.count for s, p in pending.items()}
    new_clusters = math.ceil(counts[1] / r.keywords_per_cluster)
    ideas = math.ceil((counts[2] + new_clusters) * r.ideas_per_cluster)
    tasks = counts[3] + ideas + counts[4]
    contents = counts[5] + tasks
    images = counts[6] + math.ceil(contents * r.images_per_article)
    units = {1: math.ceil(counts[1] / batch_size(config, 1)), 2: ideas,
             4: tasks * WORDS_PER_ARTICLE, 5: contents, 6: images}
    wanted = [(s, OPERATIONS[s], n) for s, n in units.items() if n > 0]
    # Words are priced per article (a minimum applies per request), the rest in one go.
    items = [(op, WORDS_PER_ARTICLE if s == 4 else n) for s, op, n in wanted]
    quote = await billing.quote(account_id, items)
    credits = {s: q.credits * (tasks if s == 4 else 1)
               for (s, _, _), q in zip(wanted, quote.quotes, strict=True)}
    stages = [StageEstimate(stage=s, name=STAGE_NAMES[s], pending=counts[s],
                            operation_type=OPERATIONS.get(s), estimated_credits=credits.get(s, 0))
              for s in range(1, 8)]
    total = sum(credits.values())
    required = math.ceil(total * margin)
    return EstimateOut(estimated_credits=total, current_balance=quote.available,
                       required_credits=required, sufficient=quote.available >= required,
                       stages=stages)
