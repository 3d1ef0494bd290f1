"""The OpenAI-compatible clustering engine: the original IGNY8 JSON contract
(`{"clusters": [{name, description, keywords}]}`), validated with pydantic plus "only
input keywords"; one repair turn, then `AIResponseInvalid` (refundable)."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, Field, field_validator

from libs.common.ai.base import ChatMessage, TextGenerator
from libs.common.ai.structured import complete_json
from libs.common.fields import ShortText
from services.planner.clustering.model import (
    Cluster,
    ClusteredKeyword,
    ClusteringResult,
    ExistingCluster,
    KeywordInput,
)
from services.planner.clustering.text import group_by_text, normalize_keyword, unique_name
from services.planner.intent import classify_intent, dominant_intent

KEYWORDS_PLACEHOLDER = "[IGNY8_KEYWORDS]"

DEFAULT_CLUSTERING_PROMPT = (
    "Group these search keywords into topic clusters; each cluster becomes one pillar page. "
    "Use every keyword exactly once, spelled as given. Answer with a JSON object "
    '{"clusters": [{"name": "...", "description": "...", "keywords": ["..."]}]}.\n\n'
    "Keywords:\n" + KEYWORDS_PLACEHOLDER
)


class AIClusterSpec(BaseModel):
    name: ShortText
    description: str = ""
    keywords: list[str] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _strip(cls, v: str) -> str:
        v = " ".join(v.split())
        if not v:
            raise ValueError("name must not be blank")
        return v


class AIClusteringAnswer(BaseModel):
    clusters: list[AIClusterSpec] = Field(min_length=1)


def render_prompt(template: str, keywords: Sequence[str]) -> str:
    listing = "\n".join(f"- {k}" for k in keywords)
    if KEYWORDS_PLACEHOLDER in template:
        return template.replace(KEYWORDS_PLACEHOLDER, listing)
    return f"{template.rstrip()}\n\nKeywords:\n{listing}"


class OpenAIClusteringEngine:
    """Clusters through a chat model. The answer must follow the contract and name only
    keywords from the input; one repair retry, then `AIResponseInvalid` (full refund)."""

    name = "openai"

    def __init__(
        self,
        provider: TextGenerator,
        prompt: str = DEFAULT_CLUSTERING_PROMPT,
        *,
        model: str | None = None,
    ) -> None:
        self.provider = provider
        self.prompt = prompt
        self.model = model

    async def cluster(
        self, keywords: Sequence[KeywordInput], existing: Sequence[ExistingCluster] = ()
    ) -> ClusteringResult:
        by_text = group_by_text(keywords)
        if not by_text:
            return ClusteringResult(clusters=(), model=self.model or "openai")
        shown = [by_text[t][0].text.strip() for t in sorted(by_text)]
        prompt = render_prompt(self.prompt, shown)
        if existing:
            prompt += (
                "\n\nExisting clusters (reuse a name exactly to add keywords to it):\n"
                + "\n".join(f"- {c.name}" for c in existing)
            )

        def check(answer: AIClusteringAnswer) -> None:
            unknown = [
                k
                for c in answer.clusters
                for k in c.keywords
                if normalize_keyword(k) not in by_text
            ]
            if unknown:
                raise ValueError(
                    "these keywords are not in the input: "
                    + ", ".join(repr(k) for k in unknown[:10])
                )

        answer = await complete_json(
            self.provider,
            [ChatMessage("user", prompt)],
            AIClusteringAnswer,
            check=check,
            model=self.model,
        )
        existing_by_name = {c.name.lower(): c for c in existing}
        placed: set[str] = set()
        merged: dict[str, tuple[AIClusterSpec, list[KeywordInput]]] = {}
        for spec in answer.value.clusters:
            members: list[KeywordInput] = []
            for k in spec.keywords:
                norm = normalize_keyword(k)
                if norm in placed:
                    continue  # a keyword named twice stays in its first cluster
                placed.add(norm)
                members.extend(by_text[norm])
            if not members:
                continue
            key = spec.name.lower()
            if key in merged:
                merged[key][1].extend(members)
            else:
                merged[key] = (spec, members)
        taken = {c.name.lower() for c in existing}
        clusters: list[Cluster] = []
        for key, (spec, members) in merged.items():
            joined = existing_by_name.get(key)
            ck = [ClusteredKeyword(m, m.intent or classify_intent(m.text)) for m in members]
            ck.sort(key=lambda m: (-m.keyword.volume, normalize_keyword(m.keyword.text)))
            name = joined.name if joined else unique_name(spec.name[:255], taken)
            clusters.append(
                Cluster(
                    name=name,
                    description=spec.description.strip(),
                    keywords=tuple(ck),
                    intent=dominant_intent((m.intent, m.keyword.volume) for m in ck),
                    volume=sum(max(0, m.keyword.volume) for m in ck),
                    existing_id=joined.id if joined else None,
                    # The chat model gives no topics: a cluster is its own topic.
                    topic=(joined.topic or joined.name) if joined else name,
                )
            )
        unassigned = tuple(kw for t in sorted(by_text) if t not in placed for kw in by_text[t])
        return ClusteringResult(
            clusters=tuple(clusters), model=answer.model, unassigned=unassigned, usage=answer.usage
        )
