"""Keywords written with form-encoded and multipart bodies, as DRF's default parsers read
them for a ported client (`curl -d`, `curl -F`; ADR 0044): the create, a bulk action's
repeated `ids`, a bad value named in the 400, and the CSV import left as it was."""

from __future__ import annotations

from urllib.parse import urlencode

import httpx

from .conftest import API, Tenant

FORM = {"content-type": "application/x-www-form-urlencoded"}


def form_headers(tenant: Tenant, role: str = "owner") -> dict[str, str]:
    return {**tenant.headers(role), **FORM}


async def test_a_keyword_created_and_bulk_changed_by_forms(client: httpx.AsyncClient,
                                                           tenant: Tenant) -> None:
    body = urlencode({"keyword": "form widgets", "site_id": tenant.site_id,
                      "sector_id": tenant.sector_id, "volume": "250", "difficulty": "",
                      "cluster_id": "", "disabled": "false", "id": "999"})
    created = await client.post(f"{API}/keywords/", content=body,
                                headers=form_headers(tenant))
    assert created.status_code == 201, created.text
    row = created.json()
    assert (row["keyword"], row["volume"], row["difficulty"], row["cluster_id"],
            row["disabled"]) == ("form widgets", 250, 0, None, False)
    assert row["id"] != 999

    multipart = await client.post(
        f"{API}/keywords/", headers=tenant.headers(),
        data={"keyword": "multipart widgets", "site_id": str(tenant.site_id),
              "sector_id": str(tenant.sector_id), "volume": "40", "intent": "commercial"})
    assert multipart.status_code == 201, multipart.text
    assert (multipart.json()["volume"], multipart.json()["intent"]) == (40, "commercial")
    ids = [row["id"], multipart.json()["id"]]

    status = await client.post(f"{API}/keywords/bulk_update_status/",
                               content=f"ids={ids[0]}&ids={ids[1]}&status=archived",
                               headers=form_headers(tenant))
    assert status.json()["data"] == {"updated_count": 2}
    one = await client.post(f"{API}/keywords/bulk_delete/", content=f"ids={ids[1]}",
                            headers=form_headers(tenant))
    assert one.json()["data"] == {"deleted_count": 1}
    edited = await client.patch(f"{API}/keywords/{ids[0]}/", content="volume=7&status=active",
                                headers=form_headers(tenant))
    assert (edited.json()["volume"], edited.json()["status"]) == (7, "active")
    viewer = await client.post(f"{API}/keywords/bulk_delete/", content=f"ids={ids[0]}",
                               headers=form_headers(tenant, "viewer"))
    assert viewer.status_code == 403


async def test_bad_form_values_are_400s_naming_the_field(client: httpx.AsyncClient,
                                                         tenant: Tenant) -> None:
    bad = await client.post(
        f"{API}/keywords/", headers=form_headers(tenant),
        content=f"keyword=x&site_id={tenant.site_id}&sector_id={tenant.sector_id}"
                "&volume=lots&status=gone")
    assert bad.status_code == 400
    errors = bad.json()["errors"]
    assert errors["volume"] == ["A valid integer is required."]
    assert list(errors) == ["volume", "status"]
    ids = await client.post(f"{API}/keywords/bulk_delete/", content="ids=1&ids=two",
                            headers=form_headers(tenant))
    assert ids.json()["errors"] == {"ids.1": ["A valid integer is required."]}
    nul = await client.post(f"{API}/keywords/", headers=form_headers(tenant),
                            content=f"keyword=a%00b&site_id={tenant.site_id}")
    assert nul.json()["errors"] == {"keyword": ["Null characters are not allowed."]}
    plain = await client.post(f"{API}/keywords/bulk_delete/", content="ids=1",
                              headers={**tenant.headers(), "content-type": "text/plain"})
    assert plain.status_code == 415


async def test_the_csv_import_still_takes_its_form(client: httpx.AsyncClient,
                                                   tenant: Tenant) -> None:
    r = await client.post(f"{API}/keywords/import_keywords/", headers=tenant.headers(),
                          data={"site_id": str(tenant.site_id),
                                "sector_id": str(tenant.sector_id)},
                          files={"file": ("k.csv", b"keyword,volume\nform import one,5\n",
                                          "text/csv")})
    assert r.status_code in (200, 201), r.text
