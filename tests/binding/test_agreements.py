"""The binding agreement: every published version has its text in zh-CN and en, readable by anyone;
a binding records the version its customer accepted (only the current one), and its impact and
account report cite it. On the real broker and both databases."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.binding import agreements
from services.binding.models import Binding
from tests.binding.test_api import assert_problem
from tests.binding.test_report import text_of
from tests.factories import CURRENT_AGREEMENT, bind_account, card_number, customer_with_binding
from tests.stack import BusTopics, auth, running_stack

SUPERSEDED = "2025-06"


@pytest.mark.parametrize("version", list(agreements.VERSIONS))
@pytest.mark.parametrize("locale", ["zh-CN", "en"])
def test_every_published_version_has_its_text_in_both_locales(version: str, locale: str) -> None:
    agreement = agreements.agreement(version, locale)
    assert agreement is not None and agreement.title and len(agreement.text) > 500
    chinese = any("\u4e00" <= char <= "\u9fff" for char in agreement.title + agreement.text)
    assert chinese if locale == "zh-CN" else not chinese
    assert version in agreement.text, "the text names its own version"


def test_the_current_version_is_the_newest_and_promises_what_the_service_does() -> None:
    assert agreements.CURRENT == max(agreements.VERSIONS) == "2026-12" and SUPERSEDED in agreements.VERSIONS
    current = agreements.agreement(agreements.CURRENT, "zh-CN")
    assert current is not None and "7 天内" in current.text and "只有工作人员才能拒绝" in current.text


async def test_a_binding_records_the_agreement_and_its_impact_and_report_cite_it(
    kafka_topics: BusTopics, database_urls: dict[str, str], tmp_path: Path
) -> None:
    async with running_stack(kafka_topics, database_urls, tmp_path) as stack:
        client = stack.client("binding")
        # Public: read before binding, by anyone, in the language asked for.
        zh = await client.get(f"/v1/agreements/{CURRENT_AGREEMENT}")
        assert zh.status_code == 200 and zh.headers["content-language"] == "zh-CN"
        assert (zh.json()["title"], zh.json()["current"]) == ("房贷还款账户绑定及自动扣款服务协议", True)
        en = await client.get(f"/v1/agreements/{SUPERSEDED}", headers={"Accept-Language": "en-GB,en;q=0.9"})
        assert en.status_code == 200 and en.headers["content-language"] == "en"
        assert (en.json()["current"], en.json()["current_version"], en.json()["in_force_from"]) == (
            False,
            CURRENT_AGREEMENT,
            "2025-06-01",
        )
        assert_problem(await client.get("/v1/agreements/2019-01"), 404, "not-found")
        assert_problem(await client.get("/v1/agreements/latest"), 422, "validation-error")

        holder = await customer_with_binding(stack)
        body = {
            "lender": "示例银行",
            "account_number": card_number(),
            "monthly_instalment": 6000,
            "due_day": 10,
        }
        headers = auth(holder.user_id)
        # Only the version in force can be accepted; a bad one binds nothing.
        assert_problem(await client.post("/v1/bindings", json=body, headers=headers), 422, "validation-error")
        superseded = assert_problem(
            await client.post("/v1/bindings", json=body | {"agreement_version": SUPERSEDED}, headers=headers),
            422,
            "agreement-superseded",
        )
        assert superseded["current_version"] == CURRENT_AGREEMENT
        assert_problem(
            await client.post("/v1/bindings", json=body | {"agreement_version": "2030-01"}, headers=headers),
            422,
            "agreement-unknown",
        )
        assert [
            item["id"] for item in (await client.get("/v1/bindings", headers=headers)).json()["items"]
        ] == [holder.binding_id]

        created = await bind_account(
            stack,
            holder.user_id,
            holder.phone,
            body | {"agreement_version": CURRENT_AGREEMENT},
            decision=None,
        )
        binding_id = created["id"]
        assert created["agreement_version"] == CURRENT_AGREEMENT
        async with stack.runtime("binding").session_factory() as session:
            assert (await session.get(Binding, binding_id)).agreement_version == CURRENT_AGREEMENT

        impact = (
            await client.get(
                f"/v1/bindings/{binding_id}/impact", headers={**headers, "Accept-Language": "en"}
            )
        ).json()
        assert impact["agreement"] == {
            "version": CURRENT_AGREEMENT,
            "title": "Mortgage Repayment Account Binding and Auto-debit Agreement",
            "href": f"/v1/agreements/{CURRENT_AGREEMENT}",
        }
        report = (await client.get(f"/v1/bindings/{binding_id}/report", headers=headers)).json()
        assert report["binding"]["agreement_version"] == CURRENT_AGREEMENT
        assert report["impact"]["agreement"]["title"] == "房贷还款账户绑定及自动扣款服务协议"
        pdf = await client.get(
            f"/v1/bindings/{binding_id}/report", headers={**headers, "Accept": "application/pdf"}
        )
        assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
        assert f"《房贷还款账户绑定及自动扣款服务协议》{CURRENT_AGREEMENT} 版" in text_of(pdf.content)

        created_events = [
            event.data for event in await kafka_topics.events() if event.type == "BindingCreated"
        ]
        assert [event.binding_id for event in created_events] == [binding_id]
