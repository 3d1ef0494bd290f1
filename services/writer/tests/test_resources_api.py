"""Tasks, content, images, taxonomies and author profiles through the API: every filter,
search, ordering and bulk action the reference lists; bodies read as DRF reads them;
another tenant's rows are 404."""

from __future__ import annotations

from typing import Any

import httpx

from libs.common.db import Database
from libs.common.schemas import WriteModel
from services.writer import schemas as s

from .conftest import (
    API,
    FakeAuth,
    MakeTenant,
    Tenant,
    add_cluster,
    create,
    in_sector,
    set_plan,
)


def ids(answer: httpx.Response) -> list[int]:
    assert answer.status_code == 200, answer.text
    return [r["id"] for r in answer.json()["results"]]


async def three_tasks(client: httpx.AsyncClient, db: Database,
                      t: Tenant) -> list[dict[str, Any]]:
    grinding, descaling = await add_cluster(db, t), await add_cluster(db, t, name="Kettles")
    return await create(client, t, "writer/tasks/",
                        in_sector(t, title="Best espresso grinders", keywords="grinder, burr",
                                  content_type="post", content_structure="comparison",
                                  word_count=1800, cluster_id=grinding),
                        in_sector(t, title="How to descale a kettle", keywords="limescale",
                                  content_type="page", content_structure="how_to",
                                  word_count=900, status="review", cluster_id=descaling),
                        {"site_id": t.site_id, "sector_id": t.sector_ids[1],
                         "title": "Tea for beginners", "keywords": "green tea, burr-free",
                         "word_count": 1200, "status": "archived"})


async def test_task_filters_search_ordering_and_bulk_actions(
        client: httpx.AsyncClient, tenant: Tenant, writer_db: Database) -> None:
    grinders, kettle, tea = await three_tasks(client, writer_db, tenant)
    h = tenant.headers()
    assert grinders["status"] == "draft"
    assert grinders["content_id"] is None
    get = lambda q: client.get(f"{API}/tasks/?{q}", headers=h)  # noqa: E731
    assert ids(await get("")) == [tea["id"], kettle["id"], grinders["id"]]
    assert ids(await get("status=review")) == [kettle["id"]]
    assert ids(await get(f"cluster_id={grinders['cluster_id']}")) == [grinders["id"]]
    assert ids(await get("content_type=page")) == [kettle["id"]]
    assert ids(await get("content_structure=comparison")) == [grinders["id"]]
    assert ids(await get(f"site_id={tenant.site_id}&sector_id={tenant.sector_ids[1]}")) == [
        tea["id"]]
    assert ids(await get("search=BURR")) == [tea["id"], grinders["id"]]    # title or keywords
    assert ids(await get("search=kettle")) == [kettle["id"]]
    assert ids(await get("ordering=word_count")) == [kettle["id"], tea["id"], grinders["id"]]
    assert ids(await get("ordering=-title")) == [tea["id"], kettle["id"], grinders["id"]]
    assert ids(await get("status=")) == ids(await get(""))       # empty filters nothing
    bad = await get("status=published")
    assert bad.status_code == 400
    assert "status" in bad.json()["errors"]
    # An unknown ordering term is dropped (DRF's OrderingFilter, ADR 0041).
    assert ids(await get("ordering=volume")) == ids(await get(""))
    assert ids(await get("ordering=volume,-title")) == [tea["id"], kettle["id"], grinders["id"]]
    # An unknown query parameter is ignored, as django-filter ignores it.
    assert ids(await get("colour=red&status=review")) == [kettle["id"]]

    moved = await client.post(f"{API}/tasks/bulk_update/", headers=h, json={
        "ids": [grinders["id"], kettle["id"]], "status": "completed"})
    assert moved.json() == {"data": {"updated_count": 2}, "message": "2 tasks updated"}
    assert ids(await get("status=completed")) == [kettle["id"], grinders["id"]]
    gone = await client.post(f"{API}/tasks/bulk_delete/", headers=h,
                             json={"ids": [tea["id"], kettle["id"]], "foo": 1})
    assert gone.json()["data"] == {"deleted_count": 2}
    assert ids(await get("")) == [grinders["id"]]
    assert (await client.get(f"{API}/tasks/{tea['id']}/", headers=h)).status_code == 404


async def test_a_task_put_back_as_read_and_its_checks(
        client: httpx.AsyncClient, tenant: Tenant) -> None:
    (task,) = await create(client, tenant, "writer/tasks/", in_sector(tenant, title="Kettles"))
    h = tenant.headers()
    edited = {**task, "title": "  Electric   kettles ", "prompt_override": "Write briefly."}
    r = await client.put(f"{API}/tasks/{task['id']}/", headers=h, json=edited)
    assert r.status_code == 200, r.text
    assert (r.json()["title"], r.json()["prompt_override"]) == ("Electric kettles",
                                                                "Write briefly.")
    # Unknown, fixed and read-only names are ignored, as DRF's serializer ignores them
    # (ADR 0041): the rest is applied, nothing they name changes.
    before = (await client.get(f"{API}/tasks/{task['id']}/", headers=h)).json()
    ignored = await client.patch(f"{API}/tasks/{task['id']}/", headers=h, json={
        "prompt_override": "Shorter.", "colour": "red", "site_id": tenant.site_id + 1,
        "sector_id": tenant.sector_ids[1], "account_id": tenant.account_id + 1, "id": 1,
        "content_id": 5})
    assert ignored.status_code == 200, ignored.text
    after = (await client.get(f"{API}/tasks/{task['id']}/", headers=h)).json()
    assert after["prompt_override"] == "Shorter."
    skip = {"prompt_override", "updated_at"}
    assert {k: v for k, v in after.items() if k not in skip} == {
        k: v for k, v in before.items() if k not in skip}
    null_title = await client.patch(f"{API}/tasks/{task['id']}/", headers=h,
                                    json={"title": None})
    assert null_title.status_code == 400
    assert "title" in null_title.json()["errors"]
    missing_profile = await client.patch(f"{API}/tasks/{task['id']}/", headers=h,
                                         json={"author_profile_id": 999_999_999})
    assert "author_profile_id" in missing_profile.json()["errors"]
    viewer = await client.patch(f"{API}/tasks/{task['id']}/",
                                headers=tenant.headers("viewer"), json={"title": "x"})
    assert viewer.status_code == 403
    foreign_sector = await client.post(f"{API}/tasks/", headers=h, json={
        "site_id": tenant.site_id, "sector_id": 12345, "title": "x"})
    assert "sector_id" in foreign_sector.json()["errors"]
    too_many = await client.post(f"{API}/tasks/auto_generate_content/", headers=h,
                                 json={"ids": list(range(1, 52))})
    assert too_many.status_code == 400
    assert "ids" in too_many.json()["errors"]
    # 50 distinct ids pass the limit (these are nobody's tasks: 404, not 400); duplicates
    # count once.
    at_limit = await client.post(f"{API}/tasks/auto_generate_content/", headers=h,
                                 json={"ids": list(range(1, 51))})
    assert at_limit.status_code == 404, at_limit.text
    repeated = await client.post(f"{API}/tasks/auto_generate_content/", headers=h,
                                 json={"ids": [999_999_999] * 60})
    assert repeated.status_code == 404, repeated.text
    assert (await client.get(f"{API}/tasks/auto_generate_content/", headers=h)
            ).status_code == 405


async def test_content_counts_words_and_bumps_its_revision(
        client: httpx.AsyncClient, tenant: Tenant) -> None:
    (task,) = await create(client, tenant, "writer/tasks/", in_sector(tenant, title="Kettles"))
    h = tenant.headers()
    (content,) = await create(client, tenant, "writer/content/", in_sector(
        tenant, title="Kettles", task_id=task["id"], html="<h1>Kettles</h1><p>One two three.</p>",
        primary_keyword="kettles", secondary_keywords=["how to descale a kettle"]))
    assert (content["word_count"], content["revision"], content["status"],
            content["source"]) == (4, 1, "draft", "igny8")
    again = await client.post(f"{API}/content/", headers=h, json=in_sector(
        tenant, title="Twice", task_id=task["id"]))
    assert again.status_code == 409
    assert "task_id" in again.json()["errors"]
    r = await client.put(f"{API}/content/{content['id']}/", headers=h, json={
        **content, "html": "<p>Four five six seven.</p>", "status": "review"})
    assert r.status_code == 200, r.text
    assert (r.json()["word_count"], r.json()["revision"], r.json()["status"]) == (4, 2, "review")
    bad_slug = await client.patch(f"{API}/content/{content['id']}/", headers=h,
                                  json={"slug": "Not A Slug"})
    assert "slug" in bad_slug.json()["errors"]
    assert (await client.get(f"{API}/tasks/{task['id']}/", headers=h)).json()[
        "content_id"] == content["id"]
    listed = await client.get(f"{API}/content/?status=review&content_type=post&task_id="
                              f"{task['id']}&site_id={tenant.site_id}&sector_id="
                              f"{tenant.sector_id}&search=KETT", headers=h)
    assert ids(listed) == [content["id"]]
    assert ids(await client.get(f"{API}/content/?status=published", headers=h)) == []
    assert ids(await client.get(f"{API}/content/?ordering=-word_count,title",
                                headers=h)) == [content["id"]]
    assert (await client.delete(f"{API}/content/{content['id']}/", headers=h)).status_code == 204
    assert (await client.get(f"{API}/tasks/{task['id']}/", headers=h)).json()[
        "content_id"] is None


async def test_images_filters_content_images_and_bulk_update(
        client: httpx.AsyncClient, tenant: Tenant) -> None:
    (task,) = await create(client, tenant, "writer/tasks/", in_sector(tenant, title="Kettles"))
    (content,) = await create(client, tenant, "writer/content/", in_sector(
        tenant, title="Kettles", task_id=task["id"]))
    h = tenant.headers()
    featured, inline, loose = await create(
        client, tenant, "writer/images/",
        {"content_id": content["id"], "image_type": "featured", "prompt": "A kettle"},
        {"content_id": content["id"], "image_type": "in_article", "position": 2,
         "prompt": "Scale", "status": "failed"},
        {"task_id": task["id"], "image_type": "mobile", "prompt": "Portrait"})
    assert (featured["task_id"], featured["site_id"], featured["status"],
            featured["image_url"]) == (task["id"], tenant.site_id, "pending", None)
    get = lambda q: client.get(f"{API}/images/?{q}", headers=h)  # noqa: E731
    assert ids(await get("image_type=in_article")) == [inline["id"]]
    assert ids(await get("status=failed")) == [inline["id"]]
    assert ids(await get(f"content_id={content['id']}")) == [inline["id"], featured["id"]]
    assert ids(await get(f"task_id={task['id']}")) == [loose["id"], inline["id"],
                                                      featured["id"]]
    assert ids(await get(f"site_id={tenant.site_id}&sector_id={tenant.sector_id}"
                         "&ordering=position")) == [featured["id"], loose["id"], inline["id"]]
    assert (await get("image_type=banner")).status_code == 400
    of_content = await client.get(f"{API}/images/content_images/?content_id={content['id']}",
                                  headers=h)
    assert [i["id"] for i in of_content.json()] == [featured["id"], inline["id"]]
    required = await client.get(f"{API}/images/content_images/", headers=h)
    assert required.status_code == 400
    assert "content_id" in required.json()["errors"]
    # ...and the document says so (it said optional: schemathesis' positive_data_acceptance).
    op = (await client.get("/openapi.json")).json()["paths"][f"{API}/images/content_images/"]
    assert [p["required"] for p in op["get"]["parameters"] if p["name"] == "content_id"] == [
        True]
    moved = await client.post(f"{API}/images/bulk_update/", headers=h,
                              json={"ids": [featured["id"], inline["id"]], "status": "pending"})
    assert moved.json()["data"] == {"updated_count": 1}
    no_file = await client.get(f"{API}/images/{featured['id']}/file/", headers=h)
    assert no_file.status_code == 404
    orphan = await client.post(f"{API}/images/", headers=h, json={"prompt": "x"})
    assert "content_id" in orphan.json()["errors"]
    r = await client.patch(f"{API}/images/{loose['id']}/", headers=h,
                           json={"alt_text": "A kettle on a hob", "image_url": "ignored"})
    assert r.json()["alt_text"] == "A kettle on a hob"


async def test_taxonomies_are_unique_per_site_type_and_slug(
        client: httpx.AsyncClient, tenant: Tenant, fake_auth: FakeAuth) -> None:
    h = tenant.headers()
    # A taxonomy has no sector: one sent (the reference check's body) is ignored (ADR 0041).
    coffee, tag = await create(client, tenant, "writer/taxonomies/",
                               {"site_id": tenant.site_id, "name": "Coffee & Tea",
                                "sector_id": tenant.sector_id},
                               {"site_id": tenant.site_id, "name": "Coffee & Tea",
                                "taxonomy_type": "tag", "external_id": "17"})
    assert (coffee["slug"], coffee["taxonomy_type"]) == ("coffee-tea", "category")
    clash = await client.post(f"{API}/taxonomies/", headers=h, json={
        "site_id": tenant.site_id, "name": "Other", "slug": "coffee-tea"})
    assert clash.status_code == 409
    assert "slug" in clash.json()["errors"]
    get = lambda q: client.get(f"{API}/taxonomies/?{q}", headers=h)  # noqa: E731
    assert ids(await get("taxonomy_type=tag")) == [tag["id"]]
    assert ids(await get("external_id=17")) == [tag["id"]]
    assert ids(await get("search=coffee&ordering=taxonomy_type")) == [coffee["id"], tag["id"]]
    renamed = await client.patch(f"{API}/taxonomies/{tag['id']}/", headers=h,
                                 json={"taxonomy_type": "category"})
    assert renamed.status_code == 409
    # Unique per site: another site of the account may use the same slug.
    other_site, _ = fake_auth.add_site(tenant.account_id)
    (elsewhere,) = await create(client, tenant, "writer/taxonomies/",
                                {"site_id": other_site, "name": "Coffee & Tea"})
    assert elsewhere["slug"] == "coffee-tea"
    assert ids(await get(f"site_id={other_site}")) == [elsewhere["id"]]
    unknown_site = await client.post(f"{API}/taxonomies/", headers=h,
                                     json={"site_id": 999_999_999, "name": "x"})
    assert unknown_site.status_code == 404


async def test_a_duplicate_profile_name_beyond_ascii_is_a_409_not_a_500(
        client: httpx.AsyncClient, tenant: Tenant) -> None:
    """Schemathesis' stateful phase: `name.lower()` in Python against PostgreSQL's C-locale
    `lower()` missed an exact duplicate with `É` in it; the insert broke the unique
    constraint (a 500)."""
    h = tenant.headers()
    path = "/api/v1/system/author-profiles/"
    (first,) = await create(client, tenant, "system/author-profiles/", {"name": "ÉMILE"})
    again = await client.post(path, headers=h, json={"name": "ÉMILE", "is_active": False})
    assert again.status_code == 409, again.text
    assert "name" in again.json()["errors"]
    other = await client.post(path, headers=h, json={"name": "Zoé", "is_active": False})
    assert other.status_code == 201, other.text
    renamed = await client.patch(f"{path}{other.json()['id']}/", headers=h,
                                 json={"name": "ÉMILE"})
    assert renamed.status_code == 409, renamed.text
    assert sorted(ids(await client.get(path, headers=h))) == [first["id"], other.json()["id"]]


async def test_author_profiles_are_limited_by_the_plan(
        client: httpx.AsyncClient, tenant: Tenant, writer_db: Database) -> None:
    await set_plan(writer_db, tenant.account_id, max_author_profiles=2)
    h = tenant.headers()
    path = "/api/v1/system/author-profiles/"
    first, second = await create(client, tenant, "system/author-profiles/",
                                 {"name": "Barista", "tone": "warm"},
                                 {"name": "Engineer", "language": "de"})
    third = await client.post(path, headers=h, json={"name": "Critic"})
    assert third.status_code == 403
    assert "max_author_profiles" in third.json()["detail"]
    parked = await client.post(path, headers=h, json={"name": "Critic", "is_active": False})
    assert parked.status_code == 201
    revived = await client.patch(f"{path}{parked.json()['id']}/", headers=h,
                                 json={"is_active": True})
    assert revived.status_code == 403
    duplicate = await client.patch(f"{path}{second['id']}/", headers=h,
                                   json={"name": "barista"})
    assert duplicate.status_code == 409
    assert ids(await client.get(f"{path}?language=de", headers=h)) == [second["id"]]
    assert ids(await client.get(f"{path}?is_active=false", headers=h)) == [parked.json()["id"]]
    assert ids(await client.get(f"{path}?search=bari&ordering=name", headers=h)) == [
        first["id"]]
    assert (await client.delete(f"{path}{first['id']}/", headers=h)).status_code == 204
    assert (await client.post(path, headers=h, json={"name": "Critic 2"})).status_code == 201


async def test_a_field_left_out_of_a_create_body_gets_the_default_it_documents(
        client: httpx.AsyncClient, tenant: Tenant) -> None:
    """The create bodies' defaults are the OpenAPI's word for what the tables give a
    field left out (the service writes only what was sent)."""
    sent: list[tuple[type[WriteModel], str, dict[str, Any]]] = [
        (s.TaskCreate, "writer/tasks/", in_sector(tenant, title="T")),
        (s.ContentCreate, "writer/content/", in_sector(tenant, title="C")),
        (s.TaxonomyCreate, "writer/taxonomies/", {"site_id": tenant.site_id, "name": "Tea"}),
        (s.AuthorProfileCreate, "system/author-profiles/", {"name": "P"})]
    made = {body: (await create(client, tenant, path, values))[0]
            for body, path, values in sent}
    image = {"content_id": made[s.ContentCreate]["id"]}
    sent.append((s.ImageCreate, "", image))
    (made[s.ImageCreate],) = await create(client, tenant, "writer/images/", image)
    assert made[s.TaxonomyCreate]["slug"] == "tea"  # "" (its default): from the name
    made[s.TaxonomyCreate]["slug"] = ""
    for body, _, values in sent:
        for name, field in body.model_fields.items():
            if name not in values:
                assert made[body][name] == field.get_default(call_default_factory=True), (
                    body.__name__, name)


async def test_another_tenants_rows_are_not_found(
        client: httpx.AsyncClient, tenant: Tenant, make_tenant: MakeTenant) -> None:
    (task,) = await create(client, tenant, "writer/tasks/", in_sector(tenant, title="Mine"))
    (content,) = await create(client, tenant, "writer/content/", in_sector(
        tenant, title="Mine", task_id=task["id"]))
    (image,) = await create(client, tenant, "writer/images/",
                            {"content_id": content["id"], "prompt": "A kettle"})
    (taxonomy,) = await create(client, tenant, "writer/taxonomies/",
                               {"site_id": tenant.site_id, "name": "Mine"})
    (profile,) = await create(client, tenant, "system/author-profiles/", {"name": "Mine"})
    other = await make_tenant()
    h = other.headers()
    for path in (f"{API}/tasks/{task['id']}/", f"{API}/content/{content['id']}/",
                 f"{API}/images/{image['id']}/", f"{API}/images/{image['id']}/file/",
                 f"{API}/images/{image['id']}/download/",
                 f"{API}/taxonomies/{taxonomy['id']}/",
                 f"/api/v1/system/author-profiles/{profile['id']}/"):
        assert (await client.get(path, headers=h)).status_code == 404, path
    assert (await client.get(f"{API}/images/content_images/?content_id={content['id']}",
                             headers=h)).status_code == 404
    assert (await client.delete(f"{API}/tasks/{task['id']}/", headers=h)).status_code == 404
    assert (await client.patch(f"{API}/content/{content['id']}/", headers=h,
                               json={"title": "theirs"})).status_code == 404
    for listing in ("tasks", "content", "images", "taxonomies"):
        assert (await client.get(f"{API}/{listing}/", headers=h)).json()["count"] == 0
    stolen = await client.post(f"{API}/content/", headers=h, json=in_sector(
        other, title="x", task_id=task["id"]))
    assert "task_id" in stolen.json()["errors"]
    queued = await client.post(f"{API}/tasks/auto_generate_content/", headers=h,
                               json={"ids": [task["id"]]})
    assert queued.status_code == 404


async def test_a_list_item_shows_what_its_detail_shows(client: httpx.AsyncClient,
                                                      tenant: Tenant) -> None:
    """Found probing the public API: lists answered the table's rows (`deleted_at`, an
    image's `storage_key`, a content's stored analysis, a publication's `create_started`)
    with `+00:00` times, where the detail answers the resource with `Z`, as DRF's one
    serializer answers both."""
    h = tenant.headers()
    await create(client, tenant, "writer/tasks/", in_sector(tenant, title="Moka pots"))
    (content,) = await create(client, tenant, "writer/content/",
                              in_sector(tenant, title="Moka pots", html="<p>Brew.</p>"))
    await create(client, tenant, "writer/images/", {"content_id": content["id"]})
    # A publication (`create_started` is publishing's working column): asked for, not run.
    r = await client.post("/api/v1/integration/integrations/", headers=h, json={
        "site_id": tenant.site_id, "config": {"site_url": "http://127.0.0.1:9/"},
        "credentials": {"username": "editor", "app_password": "abcd efgh ijkl mnop"}})
    assert r.status_code == 201, r.text
    r = await client.post(f"{API}/content/{content['id']}/publish/", headers=h, json={})
    assert r.status_code == 200, r.text
    for path in (f"{API}/tasks/", f"{API}/content/", f"{API}/images/",
                 "/api/v1/integration/integrations/", "/api/v1/publisher/publications/"):
        listed = await client.get(f"{path}?page_size=1", headers=h)
        (item,) = listed.json()["results"]
        detail = await client.get(f"{path}{item['id']}/", headers=h)
        assert item == detail.json(), path
        assert item["created_at"].endswith("Z")


async def test_an_integration_config_holds_only_numbers_its_answers_can_show(
        client: httpx.AsyncClient, tenant: Tenant) -> None:
    """Found probing the public API: a config number past 64 bits (or 1e308, which
    PostgreSQL gives back as an integer) was stored, then every integrations list of the
    account answered 500."""
    credentials = {"username": "editor", "app_password": "abcd efgh ijkl mnop"}
    for extra in ({"n": 2**64}, {"x": [1e308]}):
        r = await client.post("/api/v1/integration/integrations/", headers=tenant.headers(),
                              json={"site_id": tenant.site_id, "credentials": credentials,
                                    "config": {"site_url": "http://127.0.0.1:9/", **extra}})
        assert r.status_code == 400, r.text
        assert r.json()["errors"] == {"config": ["Numbers must fit in 64 bits."]}
    listed = await client.get("/api/v1/integration/integrations/", headers=tenant.headers())
    assert (listed.status_code, listed.json()["count"]) == (200, 0)


async def test_true_is_not_an_id(client: httpx.AsyncClient, tenant: Tenant) -> None:
    """Found probing the public API: `{"content_id": true}` made an image of the content
    with id 1 (pydantic reads true as 1; DRF refuses a bool for a key or an integer)."""
    h = tenant.headers()
    r = await client.post(f"{API}/images/", headers=h, json={"content_id": True})
    assert r.status_code == 400
    assert r.json()["errors"] == {"content_id": ["A valid integer is required."]}
    r = await client.post(f"{API}/tasks/bulk_delete/", headers=h, json={"ids": [True]})
    assert r.status_code == 400
    assert list(r.json()["errors"]) == ["ids.0"]
    r = await client.post(f"{API}/tasks/", headers=h,
                          json=in_sector(tenant, title="Counted", word_count=True))
    assert r.status_code == 400
    assert r.json()["errors"] == {"word_count": ["A valid integer is required."]}
