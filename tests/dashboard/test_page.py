"""The ops page in a real browser (Debian's headless Chromium, driven by Playwright, at a desktop
viewport) against the four services and the dashboard on the real broker: the live board, a
reviewer claiming and deciding a review, the case of a real request (with the anomaly model's score
and what pushed it up), the rules' dry run, save and restore, a customer found on the phone and a
message resent, and the whole page in Chinese with no blank value and no untranslated word. Every
page loads without a console error; screenshots are saved under var/test/artifacts."""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright, expect

from shared.login_links import write_login_link
from tests.conftest import ROOT
from tests.dashboard.conftest import running_dashboard
from tests.dashboard.test_api import REVIEW_EVERYTHING, sqlite_urls
from tests.dashboard.test_i18n import catalogues
from tests.factories import (
    Customer,
    customer_with_binding,
    enrolled_device,
    pass_verification,
    request_unbind,
    save_rules,
)
from tests.keys import token
from tests.stack import BusTopics, Stack, auth, eventually, running_stack, served

CHROMIUM = os.environ.get("UNBIND_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = ROOT / "var" / "test" / "artifacts"
VIEWPORT = {"width": 1400, "height": 1000}
ROUTES = ("#/", "#/reviews", "#/rules", "#/customers")
# Risk's anomaly model in the smallest windows, learning often: a few requests make it score.
QUICK_MODEL = {"risk": {"model_window": 8, "model_train_seconds": 0.2}}

pytestmark = [pytest.mark.kafka, pytest.mark.browser]


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    assert shutil.which(CHROMIUM), (
        f"{CHROMIUM} is missing: deploy/install-system-deps.sh installs Debian's chromium (or set "
        f"UNBIND_CHROMIUM)"
    )
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
            ],
        )
        yield browser
        await browser.close()


@dataclass
class OpsPage:
    stack: Stack
    app: FastAPI
    url: str
    page: Page
    problems: list[str] = field(default_factory=list)
    # Refusals a test provokes on purpose (the browser logs each as a console error).
    refusals: set[int] = field(default_factory=set)

    async def sign_in(self, subject: str, *roles: str) -> None:
        """Through the one-time link `unbind up` prints: it signs in, then the address bar no longer holds
        it."""
        code = write_login_link(self.app.state.settings.login_link_dir, token(subject, *roles), 60)
        await self.page.goto(f"{self.url}/login?code={code}")
        await expect(self.page.locator("#live")).to_have_class(re.compile(r"\bon\b"), timeout=10_000)
        await expect(self.page.locator("#who")).to_have_text(subject)

    async def go(self, route: str) -> None:
        await self.page.goto(f"{self.url}/{route}")

    async def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"dashboard-{name}.png"
        await self.page.wait_for_timeout(300)
        await self.page.screenshot(path=str(path), full_page=True)
        print(f"\nscreenshot: {path}")
        return path


@asynccontextmanager
async def ops_page(
    browser: Browser,
    topics: BusTopics,
    tmp_path: Path,
    *,
    locale: str = "en-GB",
    overrides: dict[str, dict[str, Any]] | None = None,
) -> AsyncIterator[OpsPage]:
    """The stack (its services' settings `overrides`), the dashboard wired to it, served over HTTP, and
    a page at a desktop viewport that records every console error or warning, page error and failed
    request."""
    async with (
        running_stack(topics, sqlite_urls(tmp_path), tmp_path, overrides=overrides) as stack,
        running_dashboard(topics, tmp_path, service_apps=stack.apps, push_interval_seconds=0.25) as (app, _),
        served(app) as url,
    ):
        context = await browser.new_context(viewport=VIEWPORT, locale=locale)
        page = await context.new_page()
        ops = OpsPage(stack, app, url, page)

        def on_console(message: ConsoleMessage) -> None:
            refused = re.search(r"the server responded with a status of (\d{3})", message.text)
            if message.type in ("error", "warning") and not (
                refused and int(refused.group(1)) in ops.refusals
            ):
                ops.problems.append(f"console {message.type}: {message.text}")

        page.on("console", on_console)
        page.on("pageerror", lambda error: ops.problems.append(f"page error: {error}"))
        page.on(
            "requestfailed",
            lambda request: (
                ops.problems.append(f"request failed: {request.url}")
                if "/v1/stream" not in request.url
                else None
            ),
        )
        try:
            yield ops
        finally:
            await context.close()


async def funnel_count(page: Page, state: str) -> int:
    return int(await page.locator(f'#funnel-bars g[data-state="{state}"] .count').text_content() or "0")


# Visible elements that hold a value or a label but show nothing, and "( )" left empty.
BLANKS_JS = """() => {
  const seen = (e) => Boolean(e.offsetWidth || e.offsetHeight || e.getClientRects().length);
  const holders = "td, th, dt, dd, .value, .label, h2, h3, button, a, label, legend, "
    + "#who, #live, #events-total";
  const blank = [...document.querySelectorAll(holders)]
    .filter((e) => seen(e) && !e.textContent.trim() && !e.querySelector("input, select, textarea, svg"))
    .map((e) => e.outerHTML.slice(0, 160));
  const empty = document.body.innerText.match(/[(（]\\s*[)）]|for \\)/g) || [];
  return [...blank, ...empty];
}"""

# Every visible text node, to compare with the catalogues.
TEXTS_JS = """() => {
  const texts = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode;
    const parent = node.parentElement;
    const shown = parent && (parent.offsetWidth || parent.offsetHeight);
    const own = !parent?.closest("[translate=no], .feed, .mono, code");
    if (node.textContent.trim() && shown && own) texts.push(node.textContent.trim());
  }
  return texts;
}"""


async def assert_nothing_blank(page: Page, where: str) -> None:
    assert await page.evaluate(BLANKS_JS) == [], where


async def model_scores(stack: Stack, window: int) -> None:
    """A window of requests (one per customer, let through by the default rules) assessed and learned:
    risk's anomaly model is at version 1, and scores the next request."""
    for _ in range(window):
        await request_unbind(stack, await customer_with_binding(stack))

    async def learned() -> bool:
        model = (await stack.client("risk").get("/v1/model", headers=auth("ops-1", "ops"))).json()
        return model["version"] >= 1

    await eventually(learned, 30, "the anomaly model never learned its first window")


async def test_the_ops_page_follows_an_unbind_live_and_a_reviewer_claims_and_decides_it(
    browser: Browser, kafka_topics: BusTopics, tmp_path: Path
) -> None:
    async with ops_page(browser, kafka_topics, tmp_path, overrides=QUICK_MODEL) as ops:
        page, stack = ops.page, ops.stack
        # The model learns a first window before the request of this test, which it then scores.
        await model_scores(stack, QUICK_MODEL["risk"]["model_window"])
        await page.goto(ops.url)
        await expect(page.locator("#sign-in")).to_be_visible()
        await ops.sign_in("rev-1", "ops", "reviewer")
        assert page.url == f"{ops.url}/"
        under_review_before = await funnel_count(page, "under_review")

        # Every request goes to a human, so the page has a case to decide.
        await save_rules(stack.client("risk"), REVIEW_EVERYTHING["rules"])
        customer = await customer_with_binding(stack, awake=True)
        device = await enrolled_device(stack, customer)
        accepted = time.monotonic()
        # From the device just enrolled: unlike the model's first window, which named no device.
        request_id = await request_unbind(stack, customer, device_id=device.device_id)

        await expect(
            page.locator(f'#feed-list li[data-request-id="{request_id}"][data-type="UnbindRequested"]')
        ).to_have_count(1, timeout=2_000)
        feed_seconds = time.monotonic() - accepted
        assert feed_seconds < 2.0

        await expect(page.locator('#funnel-bars g[data-state="under_review"] .count')).to_have_text(
            str(under_review_before + 1), timeout=5_000
        )
        board_row = page.locator(f'#reviews tr[data-request-id="{request_id}"]')
        await expect(board_row).to_have_count(1, timeout=10_000)
        await expect(board_row.locator("td").nth(3)).to_have_text("unbind")
        await expect(board_row.locator("td").nth(6)).to_have_text("not claimed")
        await expect(page.locator("#review-count")).to_have_text("1")
        # The request id links to its case.
        await expect(board_row.locator("a.request")).to_have_attribute("href", f"#/case/{request_id}")

        await page.click('#nav a[data-route="reviews"]')
        queue_row = page.locator(f'#queue tr[data-request-id="{request_id}"]')
        await expect(queue_row).to_have_count(1)
        await expect(queue_row.locator("td.holder")).to_have_text("not claimed")
        await queue_row.locator("button.claim").click()
        await expect(queue_row.locator("td.holder")).to_have_text("you (rev-1)")
        await expect(page.locator("#decide")).to_be_visible()
        # The reason comes from the fixed list of the decision chosen.
        await page.check('#decide-form input[value="deny"]')
        deny_reasons = await page.locator("#decide-reason option").evaluate_all(
            "options => options.map(o => o.value).filter(Boolean)"
        )
        assert "identity_not_confirmed" in deny_reasons
        await page.check('#decide-form input[value="approve"]')
        approve_reasons = await page.locator("#decide-reason option").evaluate_all(
            "options => options.map(o => o.value).filter(Boolean)"
        )
        assert approve_reasons and "identity_not_confirmed" not in approve_reasons
        await page.click("#decide-submit")
        await expect(page.locator("#decide-error")).to_have_text("Choose a reason from the list first.")
        await page.select_option("#decide-reason", approve_reasons[0])
        await page.fill("#decide-note", "called the customer back")
        await page.fill("#decide-message", "谢谢您的耐心，请完成验证。")
        await ops.screenshot("reviews-decide")
        await page.click("#decide-submit")
        await expect(page.locator("#flash")).to_contain_text("Decision recorded")

        await expect(
            page.locator(f'#feed-list li[data-request-id="{request_id}"][data-type="ReviewDecided"]')
        ).to_have_count(1, timeout=5_000)
        await expect(
            page.locator(f'#feed-list li[data-request-id="{request_id}"][data-type="VerificationRequested"]')
        ).to_have_count(1, timeout=10_000)
        await expect(queue_row).to_have_count(0, timeout=10_000)
        body = await stack.wait_for_request(
            request_id, customer.user_id, lambda body: body.get("verification") is not None
        )
        assert body["status"] == "pending_verification" and sorted(body["verification"]["methods"]) == [
            "biometric",
            "otp",
        ]
        audit = (
            await stack.client("binding").get(
                f"/v1/unbind-requests/{request_id}/audit", headers=auth("ops-1", "ops")
            )
        ).json()
        assert "rev-1" in [entry["actor"] for entry in audit], (
            audit
        )  # the reviewer is the one signed in on the page
        notices = await stack.wait_for_notice(customer.user_id, request_id, "review_approved")
        assert notices["review_approved"].endswith("审核人员留言：谢谢您的耐心，请完成验证。"), (
            "the reviewer's message goes with the outcome"
        )

        # The customer types a wrong code once, then passes both factors.
        wrong = await stack.client("verification").post(
            f"/v1/verifications/{body['verification']['id']}/otp",
            json={"code": "000000"},
            headers=auth(customer.user_id),
        )
        assert 400 <= wrong.status_code < 500, wrong.text
        await pass_verification(stack, customer, request_id, body["verification"]["id"], device=device)
        await page.click('#nav a[data-route="board"]')
        await expect(
            page.locator(f'#feed-list li[data-request-id="{request_id}"][data-type="UnbindCompleted"]')
        ).to_have_count(1, timeout=10_000)
        await expect(page.locator('#funnel-bars g[data-state="completed"] .count')).to_have_text(
            "1", timeout=5_000
        )
        await expect(page.locator('#by-kind tr[data-kind="unbind"] td').nth(2)).to_have_text(
            "1"
        )  # asks to unbind: completed
        await expect(page.locator("#latency-table tbody tr").last).not_to_contain_text("–", timeout=5_000)
        await assert_nothing_blank(page, "board")
        await ops.screenshot("board")
        print(f"feed showed the request {feed_seconds * 1000:.0f} ms after the 202")

        # The case, from the feed: everything a reviewer reads, from every service.
        await page.locator(
            f'#feed-list li[data-request-id="{request_id}"][data-type="UnbindCompleted"] a.request'
        ).click()
        assert page.url.endswith(f"#/case/{request_id}")
        await expect(page.locator("#case-request dd").first).to_have_text(request_id)
        await expect(page.locator("#case-request")).to_contain_text("completed")
        await expect(page.locator("#case-impact")).to_contain_text(
            "CNY"
        )  # the credit limit before and after, as the customer saw it
        risk = page.locator("#case-risk")
        await expect(risk).to_contain_text("look at every request")  # the matched rule
        await expect(risk.locator('tr[data-signal="device_unknown"]')).to_have_count(1)
        # The anomaly model's part: its score, its version and the features that pushed the score up.
        assessment = (
            await stack.client("risk").get(f"/v1/assessments/{request_id}", headers=auth("ops-1", "ops"))
        ).json()
        assert assessment["model_version"] >= 1 and assessment["model_explanation"], assessment
        model = risk.locator(".model")
        await expect(model.locator("h3")).to_have_text("Anomaly model")
        await expect(model.locator(".model-score")).to_have_text(f"{assessment['model_score']:.2f}")
        await expect(model.locator("dd").nth(1)).to_have_text(str(assessment["model_version"]))
        words = catalogues()["en"]
        explained = model.locator("table.explanation tbody tr")
        await expect(explained).to_have_count(len(assessment["model_explanation"]))
        for index, push in enumerate(assessment["model_explanation"]):
            cells = explained.nth(index).locator("td")
            await expect(explained.nth(index)).to_have_attribute("data-feature", push["feature"])
            await expect(cells.nth(0)).to_have_text(words[f"feature.{push['feature']}"])
            await expect(cells.nth(2)).to_have_text(f"+{push['contribution']:.2f}")
        await expect(model.locator(".model-warming")).to_have_count(0)
        attempts = page.locator("#case-verifications table.attempts tbody tr")
        await expect(attempts).not_to_have_count(0)
        await expect(page.locator("#case-verifications")).to_contain_text("wrong code")
        await expect(page.locator("#case-verifications")).to_contain_text("passed")
        await expect(page.locator("#case-reviews")).to_contain_text("rev-1")
        await expect(page.locator("#case-reviews")).to_contain_text("called the customer back")
        await expect(page.locator("#case-customer")).to_contain_text(customer.account_number[-4:])
        await expect(page.locator("#case-messages table.messages tbody tr")).not_to_have_count(0)
        await expect(page.locator("#case-messages")).not_to_contain_text(
            customer.phone.removeprefix("+86")
        )  # masked
        await expect(page.locator("#case-audit")).to_contain_text("UnbindCompleted")
        await expect(page.locator("#case-unavailable")).to_be_hidden()
        await assert_nothing_blank(page, "case")
        await ops.screenshot("case")
    assert not ops.problems, ops.problems


async def request_to_verify(stack: Stack) -> tuple[Customer, str]:
    """A customer whose unbind the default rules let through, waiting for their code."""
    customer = await customer_with_binding(stack, awake=True)
    request_id = await request_unbind(stack, customer)
    await stack.wait_for_request(
        request_id, customer.user_id, lambda body: body["status"] == "pending_verification"
    )
    return customer, request_id


async def test_an_analyst_dry_runs_saves_and_restores_rules_on_the_page(
    browser: Browser, kafka_topics: BusTopics, tmp_path: Path
) -> None:
    async with ops_page(browser, kafka_topics, tmp_path) as ops:
        page, stack = ops.page, ops.stack
        # A request the default rules let through: the dry run replays its assessment.
        customer, request_id = await request_to_verify(stack)
        await ops.sign_in("ana-1", "ops", "rules_admin")
        await page.click('#nav a[data-route="rules"]')
        first = (await stack.client("risk").get("/v1/rules", headers=auth("ops-1", "ops"))).json()["version"]
        theirs, ours, restored = first + 1, first + 2, first + 3
        await expect(page.locator("#rules-current")).to_have_attribute("data-version", str(first))
        await expect(page.locator('#rules-history tr[data-version="0"]')).to_have_count(
            1
        )  # the built-in defaults

        candidate = (
            "[\n  "
            + ",\n  ".join(
                f'{{"name": "{rule["name"]}", "action": "{rule["action"]}", "if": "{rule["if"]}"}}'
                for rule in REVIEW_EVERYTHING["rules"]
            )
            + "\n]"
        )
        await page.fill("#candidate", candidate)
        await page.fill("#sim-days", "1")
        await page.click("#simulate")
        await expect(page.locator("#simulation")).to_be_visible()
        await expect(page.locator("#simulation")).to_have_attribute("data-changed", "1")
        await expect(page.locator("#sim-transitions tbody")).to_contain_text("review")
        example = page.locator(f'#sim-examples tr[data-request-id="{request_id}"]')
        await expect(example).to_have_count(1)
        await expect(example.locator("a.request")).to_have_attribute("href", f"#/case/{request_id}")
        await ops.screenshot("rules-dry-run")

        # A broken candidate is refused with the parser's words; nothing is saved.
        ops.refusals.update({412, 422})
        await page.fill("#candidate", '[{"action": "review", "if": "requests_24h >>= 0"}]')
        await page.click("#simulate")
        await expect(page.locator("#rules-editor-error")).to_contain_text("The rules were refused")

        # Another analyst saves first: this page's save is refused (412) and says so.
        await page.fill("#candidate", candidate)
        await save_rules(
            stack.client("risk"),
            [{"name": "someone else", "action": "review", "if": "score >= 90"}],
            comment="theirs",
        )
        await page.fill("#rules-comment", "review everything for a week")
        await page.click("#save-rules")
        await expect(page.locator("#rules-editor-error")).to_contain_text(
            f"Someone else saved the rules first (now version {theirs})"
        )
        await expect(page.locator("#rules-current")).to_have_attribute("data-version", str(theirs))
        # Having read theirs, the analyst saves on top of it.
        await page.fill("#rules-comment", "review everything for a week")
        await page.click("#save-rules")
        await expect(page.locator("#flash")).to_have_text(f"Saved as version {ours}.")
        await expect(page.locator("#rules-current")).to_have_attribute("data-version", str(ours))
        await expect(page.locator("#rules-current")).to_contain_text("look at every request")
        await expect(page.locator(f'#rules-history tr[data-version="{ours}"]')).to_contain_text(
            "review everything for a week"
        )

        # The diff between two versions, computed in the page.
        await page.select_option("#diff-from", str(theirs))
        await page.select_option("#diff-to", str(ours))
        await page.click("#diff-form button")
        await expect(page.locator("#diff li.del")).to_contain_text("someone else")
        await expect(page.locator("#diff li.add")).to_contain_text("look at every request")

        # Roll back to theirs: saved as a new version, restored from theirs.
        await page.locator(f'#rules-history tr[data-version="{theirs}"] button.restore').click()
        await expect(page.locator("#flash")).to_have_text(f"Version {theirs} restored as version {restored}.")
        await expect(page.locator("#rules-current")).to_have_attribute("data-version", str(restored))
        await expect(page.locator(f'#rules-history tr[data-version="{restored}"]')).to_contain_text(
            f"version {theirs}"
        )
        current = (await stack.client("risk").get("/v1/rules", headers=auth("ops-1", "ops"))).json()
        assert current["version"] == restored and current["rules"][0]["name"] == "someone else"
        await assert_nothing_blank(page, "rules")
        await ops.screenshot("rules")
    assert not ops.problems, ops.problems


async def test_support_finds_a_customer_by_masked_phone_and_resends_a_message(
    browser: Browser, kafka_topics: BusTopics, tmp_path: Path
) -> None:
    async with ops_page(browser, kafka_topics, tmp_path) as ops:
        page, stack = ops.page, ops.stack
        customer, request_id = await request_to_verify(stack)
        await ops.sign_in("ops-1", "ops")
        await page.click('#nav a[data-route="customers"]')
        national = customer.phone.removeprefix("+86")
        masked = f"{national[:3]}****{national[-4:]}"
        await page.fill("#lookup", masked)
        await page.click("#lookup-form button")
        # Several customers may share a masked phone: the page lists them.
        result = page.locator(f'#lookup-results tr[data-user-id="{customer.user_id}"]')
        await expect(result).to_have_count(1)
        await result.locator("a.customer").click()
        assert page.url.endswith(f"#/customer/{customer.user_id}")
        await expect(page.locator("#customer-contact")).to_contain_text(masked)
        await expect(page.locator("#customer-bindings")).to_contain_text(customer.account_number[-4:])
        await expect(
            page.locator(f'#customer-requests tr[data-request-id="{request_id}"] a.request')
        ).to_have_attribute("href", f"#/case/{request_id}")
        await expect(page.locator("#view-customer")).not_to_contain_text(national)

        # A one-time code is never sent again: the page says to ask for a new one.
        ops.refusals.add(409)
        code_row = page.locator('#customer-messages tr[data-kind="otp_code"]').first
        await expect(code_row).to_have_count(1, timeout=10_000)
        await code_row.locator("button.resend").click()
        await code_row.locator("input.resend-reason").fill("the customer did not get it")
        await code_row.locator("button.send-again").click()
        await expect(page.locator("#customer-error")).to_have_text(
            "A one-time code is never sent again: the customer asks for a new code."
        )

        sent = page.locator('#customer-messages tr[data-kind="unbind_requested"][data-status="sent"]').first
        await expect(sent).to_have_count(1, timeout=10_000)
        await sent.locator("button.resend").click()
        await sent.locator("button.send-again").click()
        await expect(page.locator("#customer-error")).to_have_text(
            "Say why the message is sent again."
        )  # asked for a reason first
        await sent.locator("input.resend-reason").fill("the customer deleted the SMS")
        await sent.locator("button.send-again").click()
        await expect(page.locator("#flash")).to_have_text("The message was sent again.")
        await expect(page.locator("#customer-messages")).to_contain_text("by ops-1", timeout=5_000)
        await assert_nothing_blank(page, "customer")
        await ops.screenshot("customer")
    assert not ops.problems, ops.problems


async def test_the_page_in_chinese_has_no_blank_value_and_no_untranslated_word(
    browser: Browser, kafka_topics: BusTopics, tmp_path: Path
) -> None:
    books = catalogues()
    english = {
        text
        for key, text in books["en"].items()
        if re.search(r"[A-Za-z]{3,}", text) and text != books["zh-CN"][key]
    }
    async with ops_page(browser, kafka_topics, tmp_path, locale="zh-CN") as ops:
        page, stack = ops.page, ops.stack
        await save_rules(stack.client("risk"), REVIEW_EVERYTHING["rules"])
        customer = await customer_with_binding(stack, awake=True)
        request_id = await request_unbind(stack, customer)

        # Before signing in: the browser's language, and nothing blank.
        await page.goto(ops.url)
        assert await page.locator("html").get_attribute("lang") == "zh-CN"
        await expect(page.locator("#sign-in h2")).to_have_text("登录")
        await assert_nothing_blank(page, "sign-in")

        await ops.sign_in("rev-1", "ops", "reviewer")
        await expect(page.locator(f'#reviews tr[data-request-id="{request_id}"]')).to_have_count(
            1, timeout=10_000
        )
        # The live feed in Chinese too: the server words each line in both languages.
        assessed = page.locator(
            f'#feed-list li[data-type="RiskAssessed"][data-request-id="{request_id}"] .line'
        )
        await expect(assessed).to_contain_text(re.compile(r"风险评分 \d+ · 人工审核 · 需人工审核"))
        await expect(
            page.locator(f'#feed-list li[data-type="UnbindRequested"][data-request-id="{request_id}"] .line')
        ).to_contain_text("解绑请求 · 原因：资金规划")
        routes = [*ROUTES, f"#/case/{request_id}", f"#/customer/{customer.user_id}"]
        for route in routes:
            await ops.go(route)
            await page.wait_for_load_state("networkidle")
            await expect(page.locator(".view:not([hidden])")).to_have_count(1)
            await expect(page.locator("#view-case p.muted", has_text="加载中")).to_have_count(0)
            await expect(page.locator("#view-customer p.muted", has_text="加载中")).to_have_count(0)
            await assert_nothing_blank(page, route)
            if route.startswith("#/case/"):
                # The anomaly model had not learned a window yet: no score, and the case says why.
                await expect(page.locator("#case-risk .model-warming")).to_have_text(
                    books["zh-CN"]["case.model_warming_up"]
                )
            texts = await page.evaluate(TEXTS_JS)
            assert not set(texts) & set(books["en"]), (
                route,
                set(texts) & set(books["en"]),
            )  # no key shows instead of its text
            assert not set(texts) & english, (route, set(texts) & english)
            await ops.screenshot("zh-" + (route.strip("#/").split("/")[0] or "board"))
        await expect(page.locator("#nav a.active")).to_have_text("客户")

        # The switch: English at once, and still English after a reload.
        await page.select_option("#lang", "en")
        assert await page.locator("html").get_attribute("lang") == "en"
        await expect(page.locator('#nav a[data-route="reviews"]')).to_have_text("Reviews")
        await ops.go("#/")
        await expect(assessed).to_contain_text(re.compile(r"score \d+ · review · needs an ops review"))
        await page.reload()
        await expect(page.locator('#nav a[data-route="reviews"]')).to_have_text("Reviews")
        assert await page.locator("html").get_attribute("lang") == "en"
    assert not ops.problems, ops.problems
