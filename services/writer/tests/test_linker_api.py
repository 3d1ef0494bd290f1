"""`/api/v1/linker/` on the app with its real database, NATS and billing's real ledger:
suggest and apply on a site made of the labelled set's coffee cluster, 1 credit per
request (none for a refused one), `writer.content.updated` on apply, another tenant's
content 404, bad input 400 naming the field, 402 without credits, 403 for viewers."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import httpx

from libs.common.db import Database
from libs.common.testing.checks import rows

from .conftest import Ledger, MakeTenant, Tenant, add_cluster, create, in_sector

_PATH = Path(__file__).resolve().parents[3] / "bench" / "linker.py"
_spec = importlib.util.spec_from_file_location("bench_linker", _PATH)
assert _spec is not None
assert _spec.loader is not None
bench_linker = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("bench_linker", bench_linker)
_spec.loader.exec_module(bench_linker)

LINKER = "/api/v1/linker"
COFFEE = [a for a in bench_linker.load() if a.cluster == "coffee-brewing"]
SOURDOUGH = [a for a in bench_linker.load() if a.cluster == "sourdough"]


async def site(client: httpx.AsyncClient, db: Database, t: Tenant) -> dict[str, int]:
    """The coffee and sourdough clusters as the tenant's content: slug → id."""
    out = {}
    for articles in (COFFEE, SOURDOUGH):
        cluster_id = await add_cluster(db, t, name=articles[0].cluster)
        for a in articles:
            (row,) = await create(client, t, "writer/content/", in_sector(
                t, title=a.title, html=a.html, primary_keyword=a.keyphrase,
                secondary_keywords=list(a.keywords), cluster_id=cluster_id,
                content_structure=a.structure, slug=a.slug))
            out[a.slug] = row["id"]
    return out


async def content(client: httpx.AsyncClient, t: Tenant, content_id: int) -> dict[str, Any]:
    r = await client.get(f"/api/v1/writer/content/{content_id}/", headers=t.headers())
    assert r.status_code == 200, r.text
    return dict(r.json())


async def spent(billing: Ledger, t: Tenant) -> int:
    return 1000 - await billing.spendable(t.account_id)


async def test_suggest_then_apply_charges_one_credit_each(
        client: httpx.AsyncClient, tenant: Tenant, billing: Ledger,
        writer_db: Database) -> None:
    ids = await site(client, writer_db, tenant)
    h = tenant.headers()
    pillar = ids["brew-coffee-at-home"]
    before = await content(client, tenant, pillar)

    r = await client.post(f"{LINKER}/suggest/", headers=h, json={"content_id": pillar})
    assert r.status_code == 200, r.text
    links = r.json()["links"]
    assert {x["target_content_id"] for x in links} == {
        ids["french-press"], ids["pour-over"], ids["cold-brew"]}
    assert all(set(x) == {"target_content_id", "anchor", "paragraph_index"} for x in links)
    assert (await content(client, tenant, pillar))["revision"] == before["revision"]
    assert await spent(billing, tenant) == 1
    again = await client.post(f"{LINKER}/suggest/", headers=h, json={"content_id": pillar})
    assert again.json() == r.json()  # same input, same output
    assert await spent(billing, tenant) == 2

    r = await client.post(f"{LINKER}/apply/", headers=h, json={"content_id": pillar})
    assert r.status_code == 200, r.text
    applied = r.json()
    assert applied["links"] == links
    assert applied["revision"] == before["revision"] + 1
    after = await content(client, tenant, pillar)
    assert after["html"] == applied["html"]
    assert '<a href="/french-press/">french press coffee</a>' in after["html"]
    assert await spent(billing, tenant) == 3
    logs = await billing.usage_logs(tenant.account_id)
    assert [(x.operation_type, x.credits_used) for x in logs] == [("linking", 1)] * 3
    assert all(x.status == "captured" for x in await billing.holds(tenant.account_id))

    events = await rows(writer_db, tenant.account_id,
                        "SELECT payload FROM outbox WHERE subject = 'igny8.writer.content."
                        "updated' AND (payload->>'account_id')::bigint = :a ORDER BY seq")
    last = events[-1]["payload"]["data"]
    assert (last["content_id"], last["revision"]) == (pillar, applied["revision"])

    # Linked already: nothing more to suggest, and applying again changes nothing.
    r = await client.post(f"{LINKER}/suggest/", headers=h, json={"content_id": pillar})
    assert r.json()["links"] == []
    r = await client.post(f"{LINKER}/apply/", headers=h, json={"content_id": pillar})
    assert (r.json()["links"], r.json()["revision"]) == ([], applied["revision"])


async def test_given_links_applied_or_refused_for_free(
        client: httpx.AsyncClient, tenant: Tenant, billing: Ledger,
        writer_db: Database) -> None:
    ids = await site(client, writer_db, tenant)
    h = tenant.headers()
    source = ids["cold-brew"]
    suggested = (await client.post(f"{LINKER}/suggest/", headers=h,
                                   json={"content_id": source})).json()["links"]
    assert [x["target_content_id"] for x in suggested] == [ids["brew-coffee-at-home"]]
    html = (await content(client, tenant, source))["html"]
    paragraph = next(i for i, p in enumerate(html.split("<p>")[1:])
                     if "french press coffee will" in p)
    given = {"target_content_id": ids["french-press"], "anchor": "French Press Coffee",
             "paragraph_index": paragraph}
    assert await spent(billing, tenant) == 1

    for bad, field in (
            ({**given, "anchor": "espresso"}, "links.0.anchor"),
            ({**given, "paragraph_index": 0}, "links.0.anchor"),  # the first sentence
            ({**given, "paragraph_index": 99}, "links.0.paragraph_index"),
            ({**given, "target_content_id": source}, "links.0.target_content_id"),
            ({**given, "target_content_id": 10**12}, "links.0.target_content_id"),
            ({**given, "paragraph_index": -1}, "links.0.paragraph_index"),
            ({**given, "anchor": "", "colour": "red"}, "links.0.anchor")):
        r = await client.post(f"{LINKER}/apply/", headers=h,
                              json={"content_id": source, "links": [bad]})
        assert r.status_code == 400, (bad, r.text)
        assert field in r.json()["errors"], r.json()
    r = await client.post(f"{LINKER}/apply/", headers=h,
                          json={"content_id": source, "links": [given, given]})
    assert r.status_code == 400
    assert "links.1.target_content_id" in r.json()["errors"]
    assert await spent(billing, tenant) == 1  # refused requests cost nothing
    assert (await billing.balance(tenant.account_id)).held == 0

    # A name that is no field, in the body or in a link, is ignored (ADR 0041).
    r = await client.post(f"{LINKER}/apply/", headers=h,
                          json={"content_id": source, "links": [{**given, "colour": "red"}],
                                "extra": 1})
    assert r.status_code == 200, r.text
    assert r.json()["links"] == [given]
    assert '<a href="/french-press/">french press coffee</a>' in r.json()["html"].replace(
        "French Press Coffee", "french press coffee")
    assert await spent(billing, tenant) == 2


async def test_tenancy_bad_input_payment_and_roles(
        client: httpx.AsyncClient, tenant: Tenant, make_tenant: MakeTenant,
        billing: Ledger, writer_db: Database) -> None:
    ids = await site(client, writer_db, tenant)
    other = await make_tenant()
    theirs = {"content_id": ids["pour-over"]}
    for path in ("suggest/", "apply/"):
        r = await client.post(f"{LINKER}/{path}", headers=other.headers(), json=theirs)
        assert r.status_code == 404, r.text
    assert await spent(billing, other) == 0

    h = tenant.headers()
    for body, field in (({}, "content_id"), ({"content_id": "x"}, "content_id"),
                        ({"content_id": 0}, "content_id"),
                        ({"content_id": 0, "extra": 1}, "content_id"),
                        ({"content_id": ids["pour-over"], "links": "x"}, "links")):
        r = await client.post(f"{LINKER}/apply/", headers=h, json=body)
        assert r.status_code == 400, (body, r.text)
        assert field in r.json()["errors"], r.json()
    assert await spent(billing, tenant) == 0

    viewer = await client.post(f"{LINKER}/suggest/", headers=tenant.headers("viewer"),
                               json={"content_id": ids["pour-over"]})
    assert viewer.status_code == 403

    poor = await make_tenant(credits=0)
    (row,) = await create(client, poor, "writer/content/", in_sector(
        poor, title="Lonely", html="<h1>Lonely</h1><p>Alone here. Nobody else.</p>"))
    r = await client.post(f"{LINKER}/suggest/", headers=poor.headers(),
                          json={"content_id": row["id"]})
    assert r.status_code == 402, r.text
    assert (await billing.balance(poor.account_id)).held == 0


async def test_only_the_sites_own_content_is_linked(
        client: httpx.AsyncClient, tenant: Tenant, fake_auth: Any,
        writer_db: Database) -> None:
    ids = await site(client, writer_db, tenant)
    other_site, other_sectors = fake_auth.add_site(tenant.account_id)
    elsewhere = {"site_id": other_site, "sector_id": other_sectors[0]}
    (pillar,) = await create(client, tenant, "writer/content/", {
        **elsewhere, "title": "Coffee at Home", "primary_keyword": "coffee at home",
        "content_structure": "guide", "cluster_id": await add_cluster(
            writer_db, tenant, site_id=other_site, sector_id=other_sectors[0]),
        "html": "<h1>Coffee at Home</h1><p>Coffee is easy. It really is.</p><p>"
                + "Good coffee takes care. " * 40 + "Try french press coffee or pour over "
                "coffee, and see our guide to sourdough bread.</p>"})
    h = tenant.headers()
    r = await client.post(f"{LINKER}/suggest/", headers=h, json={"content_id": pillar["id"]})
    assert r.status_code == 200, r.text
    assert r.json()["links"] == []  # french-press, pour-over... are another site's
    given = {"target_content_id": ids["french-press"], "anchor": "french press coffee",
             "paragraph_index": 1}
    r = await client.post(f"{LINKER}/apply/", headers=h,
                          json={"content_id": pillar["id"], "links": [given]})
    assert r.status_code == 400
    assert "links.0.target_content_id" in r.json()["errors"]


async def test_an_edit_while_linking_is_a_conflict_and_costs_nothing(
        client: httpx.AsyncClient, tenant: Tenant, billing: Ledger, writer_db: Database,
        monkeypatch: Any) -> None:
    from sqlalchemy import text

    from libs.common.db import TenantScope
    from services.writer.linker import service

    ids = await site(client, writer_db, tenant)
    pillar = ids["brew-coffee-at-home"]
    real = service.site_index

    async def edited_meanwhile(targets: Any) -> Any:
        async with writer_db.session(TenantScope.account(tenant.account_id)) as s:
            await s.execute(text("UPDATE content SET revision = revision + 1 WHERE id = :i"),
                            {"i": pillar})
            await s.commit()
        return await real(targets)

    monkeypatch.setattr(service, "site_index", edited_meanwhile)
    r = await client.post(f"{LINKER}/apply/", headers=tenant.headers(),
                          json={"content_id": pillar})
    assert r.status_code == 409, r.text
    assert "content_id" in r.json()["errors"]
    assert "<a " not in (await content(client, tenant, pillar))["html"]
    assert await spent(billing, tenant) == 0
    assert (await billing.balance(tenant.account_id)).held == 0
