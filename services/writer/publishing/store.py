"""What the publisher remembers between calls, and the protocol the writer service implements.

Exactly-once publishing rests on writing down what is about to happen before it happens
(write-ahead) and what happened as soon as it did. Each method of `PublicationStore` is one
durable step: the writer service implements each with its repository in its own short
transaction, committed before the method returns (a crash right after must find it).

- `begin` writes the attempt before any call to WordPress (issue 11, step 1).
- `creating_post` marks that a create is about to be sent; `post_created` stores the post's
  id as soon as the 201 arrives (step 4). A record with `create_started` and no `post_id`
  means a create may have reached WordPress: the publisher looks for it before creating.
- `uploading_media` / `media_uploaded` do the same for images, keyed by the site and the
  image's sha256 (step 2); `term_ids` / `terms_found` cache the site's term ids by name.
- Publishes of one site should be serialised by the caller (one publishing job per site at
  a time, or a row lock in `uploading_media`): two concurrent uploads of the same new
  image could otherwise both see "not uploaded yet".

`InMemoryPublicationStore` is the reference implementation, used by the unit tests, the
fault-injection test and the bench.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

PublicationStatus = Literal[
    "pending", "published", "scheduled", "draft", "unpublished", "failed"
]


@dataclass
class PublicationRecord:
    """The publication of one content on one site, as the store keeps it."""

    site_key: str
    content_id: int
    attempt: int = 0
    status: PublicationStatus = "pending"
    post_id: int | None = None
    create_started: bool = False
    url: str | None = None
    slug: str | None = None
    revision: int | None = None
    error: str | None = None


@dataclass
class MediaRecord:
    """An image on a site: `media_id` is None while an upload may or may not have landed."""

    sha256: str
    media_id: int | None = None
    url: str | None = None


@dataclass(frozen=True)
class Outcome:
    """What a finished publish or unpublish leaves on the record."""

    status: PublicationStatus
    post_id: int | None
    url: str | None
    slug: str | None
    revision: int | None


class PublicationStore(Protocol):
    async def begin(self, site_key: str, content_id: int) -> PublicationRecord:
        """Start an attempt: attempt + 1, status `pending`, error cleared; the record
        keeps what earlier attempts learnt (post id, `create_started`)."""
        ...

    async def creating_post(self, record: PublicationRecord) -> None:
        """`create_started = True`, durably, before the create is sent."""
        ...

    async def post_created(self, record: PublicationRecord, post_id: int) -> None:
        """The post's id, durably, as soon as WordPress answered the create."""
        ...

    async def post_gone(self, record: PublicationRecord) -> None:
        """The known post no longer exists on the site: forget its id."""
        ...

    async def media(self, site_key: str, sha256: str) -> MediaRecord | None: ...

    async def uploading_media(self, site_key: str, sha256: str) -> None:
        """An upload of this image is about to be sent (a `MediaRecord` without id)."""
        ...

    async def media_uploaded(self, site_key: str, sha256: str, media_id: int, url: str) -> None:
        ...

    async def media_gone(self, site_key: str, sha256: str) -> None:
        """The site no longer has this media item: forget it."""
        ...

    async def term_ids(self, site_key: str, taxonomy: str, names: Iterable[str]) -> dict[str, int]:
        """Known term ids by name (case-insensitive) among `names`."""
        ...

    async def terms_found(self, site_key: str, taxonomy: str, ids: Mapping[str, int]) -> None: ...

    async def terms_gone(self, site_key: str, taxonomy: str, ids: Iterable[int]) -> None:
        """These term ids no longer exist on the site."""
        ...

    async def finished(self, record: PublicationRecord, outcome: Outcome) -> None: ...

    async def failed(self, record: PublicationRecord, reason: str) -> None: ...


@dataclass
class InMemoryPublicationStore:
    """`PublicationStore` in memory. `records` are copies: the publisher's own record object
    is never the stored one, as with a database."""

    records: dict[tuple[str, int], PublicationRecord] = field(default_factory=dict)
    media_by_hash: dict[tuple[str, str], MediaRecord] = field(default_factory=dict)
    terms: dict[tuple[str, str, str], int] = field(default_factory=dict)

    def _stored(self, record: PublicationRecord) -> PublicationRecord:
        return self.records[(record.site_key, record.content_id)]

    def get(self, site_key: str, content_id: int) -> PublicationRecord | None:
        found = self.records.get((site_key, content_id))
        return copy.copy(found) if found else None

    async def begin(self, site_key: str, content_id: int) -> PublicationRecord:
        stored = self.records.setdefault(
            (site_key, content_id), PublicationRecord(site_key, content_id)
        )
        stored.attempt += 1
        stored.status = "pending"
        stored.error = None
        return copy.copy(stored)

    async def creating_post(self, record: PublicationRecord) -> None:
        self._stored(record).create_started = record.create_started = True

    async def post_created(self, record: PublicationRecord, post_id: int) -> None:
        self._stored(record).post_id = record.post_id = post_id

    async def post_gone(self, record: PublicationRecord) -> None:
        stored = self._stored(record)
        stored.post_id = record.post_id = None
        stored.create_started = record.create_started = False

    async def media(self, site_key: str, sha256: str) -> MediaRecord | None:
        found = self.media_by_hash.get((site_key, sha256))
        return copy.copy(found) if found else None

    async def uploading_media(self, site_key: str, sha256: str) -> None:
        self.media_by_hash.setdefault((site_key, sha256), MediaRecord(sha256))

    async def media_uploaded(self, site_key: str, sha256: str, media_id: int, url: str) -> None:
        self.media_by_hash[(site_key, sha256)] = MediaRecord(sha256, media_id, url)

    async def media_gone(self, site_key: str, sha256: str) -> None:
        self.media_by_hash.pop((site_key, sha256), None)

    async def term_ids(self, site_key: str, taxonomy: str, names: Iterable[str]) -> dict[str, int]:
        found = {}
        for name in names:
            term_id = self.terms.get((site_key, taxonomy, name.casefold()))
            if term_id is not None:
                found[name] = term_id
        return found

    async def terms_found(self, site_key: str, taxonomy: str, ids: Mapping[str, int]) -> None:
        for name, term_id in ids.items():
            self.terms[(site_key, taxonomy, name.casefold())] = term_id

    async def terms_gone(self, site_key: str, taxonomy: str, ids: Iterable[int]) -> None:
        gone = set(ids)
        for key in [k for k, v in self.terms.items() if k[:2] == (site_key, taxonomy)
                    and v in gone]:
            del self.terms[key]

    async def finished(self, record: PublicationRecord, outcome: Outcome) -> None:
        stored = self._stored(record)
        stored.status = outcome.status
        stored.post_id = outcome.post_id
        stored.url = outcome.url
        stored.slug = outcome.slug
        stored.revision = outcome.revision
        stored.error = None

    async def failed(self, record: PublicationRecord, reason: str) -> None:
        stored = self._stored(record)
        stored.status = "failed"
        stored.error = reason
