import httpx

from libs.common.testing.tokens import TestIssuer
from services.billing.tests.conftest import new_account_id


async def test_health_and_balance(client: httpx.AsyncClient, issuer: TestIssuer) -> None:
    assert (await client.get("/readyz")).status_code == 200
    account = new_account_id()
    r = await client.get("/api/v1/billing/credits/balance/",
                         headers=issuer.headers(user_id=1, account_id=account, role="viewer"))
    assert r.status_code == 200, r.text
    assert r.json()["credits"] == 0
