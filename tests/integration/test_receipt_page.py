"""The printable receipt page (SPEC §11 / the IPN issue): the person's own successful payments
only, with what the e-mail says, in the page's language; linked from the payments table."""

from __future__ import annotations

from httpx import AsyncClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.models import PaymentStatus, PaymentTransaction
from tests.integration.test_dashboard_http import sign_in
from tests.support import Account, UserFactory, grant_payment

Sessions = async_sessionmaker[AsyncSession]


async def paid_tx(db: Sessions, account: Account) -> PaymentTransaction:
    await grant_payment(db, account.id)
    async with db() as session:
        tx = await session.scalar(
            select(PaymentTransaction).where(PaymentTransaction.user_id == account.id)
        )
    assert tx is not None
    return tx


def page_of(tx: PaymentTransaction) -> str:
    return f"/dashboard/payments/{tx.transaction_id}/receipt"


async def test_the_owner_reads_the_receipt_the_mail_holds(
    client: AsyncClient, user: Account, db: Sessions
) -> None:
    tx = await paid_tx(db, user)
    await sign_in(client, user)
    dashboard = (await client.get("/dashboard/")).text
    assert f'href="{page_of(tx)}"' in dashboard
    page = await client.get(page_of(tx))
    assert page.status_code == 200
    assert tx.transaction_id in page.text
    assert "100.00 BDT" in page.text
    assert tx.pg_txnid is not None
    assert tx.pg_txnid in page.text
    assert tx.updated_at.strftime("%Y-%m-%d %H:%M:%S UTC") in page.text
    bengali = await client.get(page_of(tx), params={"lang": "bn"})
    assert '<html lang="bn"' in bengali.text
    assert "৳১০০.০০" in bengali.text
    assert "রসিদ" in bengali.text


async def test_nobody_else_reads_it_and_unpaid_orders_have_none(
    client: AsyncClient, user_factory: UserFactory, db: Sessions
) -> None:
    owner = await user_factory.create()
    other = await user_factory.create()
    tx = await paid_tx(db, owner)
    # Signed out: the sign-in page.
    resp = await client.get(page_of(tx))
    assert (resp.status_code, resp.headers["location"]) == (303, "/login")
    await sign_in(client, other)
    resp = await client.get(page_of(tx))
    assert resp.status_code == 404
    assert 'id="no-receipt"' in resp.text
    assert 'id="receipt"' not in resp.text
    assert tx.pg_txnid is not None
    assert tx.pg_txnid not in resp.text
    async with db() as session:
        mine = await session.get(PaymentTransaction, tx.id)
        assert mine is not None
        mine.status = PaymentStatus.PENDING
        await session.commit()
    await sign_in(client, owner)
    assert (await client.get(page_of(tx))).status_code == 404
    assert page_of(tx) not in (await client.get("/dashboard/")).text
