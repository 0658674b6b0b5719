"""The account information report PDF: a real PDF, Chinese glyphs from an embedded subset
TrueType font (extractable through its ToUnicode map), both locales, byte-identical renders."""

from __future__ import annotations

import io
import logging
from datetime import UTC, date, datetime
from pathlib import Path

import pypdf
import pytest

from services.binding.report import find_cjk_font, render_pdf
from services.binding.schemas import (
    AccountReport,
    AgreementRefOut,
    BenefitOut,
    BindingOut,
    BlockerOut,
    CreditAccountOut,
    ImpactOut,
    InstalmentOut,
    MandateOut,
    RepaymentAccountOut,
)

MASKED = "6222 **** **** 4821"
HASH = "9f2c4e1ab37d50c6e8f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7"
GENERATED = datetime(2025, 6, 1, 10, 30, 15, tzinfo=UTC)

TEXT = {
    "zh-CN": {
        "effect": (
            "解绑不会影响您的征信记录；解绑后如未按时还款，逾期将如实报送至中国人民银行征信中心，"
            "请务必在每月还款日前自行还款。"
        ),
        "benefits": [
            ("rate_discount", "房贷自动还款利率优惠 0.05%（每年约节省 ¥1,200.00）"),
            ("limit_boost", "因绑定获得的信用额度 ¥10,000.00 将被收回"),
        ],
        "blockers": [
            ("instalment_due_soon", "当期账单将于 3 天内到期", True),
            ("instalment_overdue", "存在逾期未还的分期，请先结清后再申请解绑", False),
        ],
        "agreement": "房贷还款账户绑定及自动扣款服务协议",
    },
    "en": {
        "effect": (
            "Unbinding does not affect your credit record; instalments missed after unbinding are reported "
            "to the credit bureau."
        ),
        "benefits": [
            ("rate_discount", "Auto-repayment rate discount of 0.05% (about CNY 1,200.00 a year)"),
            ("limit_boost", "The CNY 10,000.00 limit granted for the binding"),
        ],
        "blockers": [
            ("instalment_due_soon", "The current instalment is due within 3 days", True),
            ("instalment_overdue", "An instalment is overdue: settle it first", False),
        ],
        "agreement": "Mortgage Repayment Account Binding and Auto-debit Agreement",
    },
}


def make_report(locale: str = "zh-CN", *, empty: bool = False) -> AccountReport:
    """A report of one active binding with auto-debit; `empty` leaves out every list and optional value."""
    text = TEXT[locale]
    current = InstalmentOut(period="2025-06", amount=6500, due_date=date(2025, 6, 3), status="unpaid")
    instalments = [
        current,
        InstalmentOut(
            period="2025-05",
            amount=6500,
            due_date=date(2025, 5, 3),
            status="paid",
            paid_at=datetime(2025, 5, 3, 1, 5, tzinfo=UTC),
            paid_by="auto_debit",
        ),
        InstalmentOut(
            period="2025-04",
            amount=6500,
            due_date=date(2025, 4, 3),
            status="paid",
            paid_at=datetime(2025, 4, 2, 12, 40, tzinfo=UTC),
            paid_by="manual",
        ),
        InstalmentOut(period="2025-03", amount=6500, due_date=date(2025, 3, 3), status="overdue"),
    ]
    mandates = [
        MandateOut(
            id="m-1",
            kind="auto_debit",
            status="active",
            created_at=datetime(2024, 1, 15, 2, 0, tzinfo=UTC),
            cancelled_at=None,
        ),
        MandateOut(
            id="m-0",
            kind="auto_debit",
            status="cancelled",
            created_at=datetime(2023, 3, 1, 2, 0, tzinfo=UTC),
            cancelled_at=datetime(2024, 1, 15, 1, 59, tzinfo=UTC),
        ),
    ]
    return AccountReport(
        generated_at=GENERATED,
        locale=locale,
        user_id="u-5f3a9c21",
        binding=BindingOut(
            id="b-5f3a9c21",
            status="active",
            auto_debit=True,
            credit_limit_contribution=10000,
            credit_account=CreditAccountOut(id="ca-5f3a9c21", credit_limit=30000),
            repayment_account=RepaymentAccountOut(
                id="ra-5f3a9c21",
                lender="示例银行" if locale == "zh-CN" else "Example Bank",
                lender_id="example_bank",
                account_number=MASKED,
                monthly_instalment=6500,
                due_day=3,
            ),
            agreement_version="2025-06",
            created_at=datetime(2024, 1, 15, 2, 0, tzinfo=UTC),
        ),
        mandates=[] if empty else mandates,
        instalments=[] if empty else instalments,
        impact=ImpactOut(
            binding_id="b-5f3a9c21",
            locale=locale,
            assessed_at=datetime(2025, 6, 1, 10, 30, 0, tzinfo=UTC),
            credit_record_effect=text["effect"],
            current_instalment=None if empty else current,
            auto_debit=True,
            benefits_lost=[] if empty else [BenefitOut(code=c, description=d) for c, d in text["benefits"]],
            credit_limit_before=30000,
            credit_limit_after=20000,
            blockers=[]
            if empty
            else [BlockerOut(code=c, message=m, acknowledgeable=a) for c, m, a in text["blockers"]],
            agreement=AgreementRefOut(
                version="2025-06", title=text["agreement"], href="/v1/agreements/2025-06"
            ),
            impact_hash=HASH,
        ),
    )


def read(pdf: bytes) -> pypdf.PdfReader:
    return pypdf.PdfReader(io.BytesIO(pdf))


def text_of(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in read(pdf).pages)


def embedded_fonts(pdf: bytes) -> list[pypdf.generic.DictionaryObject]:
    """The descriptors of the Type0 fonts the pages use."""
    descriptors = []
    for page in read(pdf).pages:
        for font in page["/Resources"]["/Font"].values():
            font = font.get_object()
            if font["/Subtype"] == "/Type0":
                descriptors.append(font["/DescendantFonts"][0].get_object()["/FontDescriptor"].get_object())
    return descriptors


def test_the_report_is_a_pdf_with_the_chinese_title_and_the_masked_account_number() -> None:
    pdf = render_pdf(make_report())

    assert pdf.startswith(b"%PDF-")
    assert len(read(pdf).pages) >= 1
    text = text_of(pdf)
    # Extractable because fpdf2 writes a ToUnicode map for the subset CJK font.
    assert "账户信息报告" in text
    assert MASKED in text
    assert "当期账单将于 3 天内到期" in text
    assert "生效中" in text and "已逾期" in text
    assert "¥30,000.00 → ¥20,000.00" in text
    assert f"报告校验码：{HASH[:16]}" in text
    assert HASH[16:32] not in text
    assert "第 1 / " in text
    assert "《房贷还款账户绑定及自动扣款服务协议》2025-06 版" in text, (
        "the report cites the agreement the customer accepted"
    )


def test_times_are_shown_in_shanghai_time_with_the_zone() -> None:
    text = text_of(render_pdf(make_report()))

    assert "2025-06-01 18:30:15（北京时间）" in text  # generated_at 10:30:15 UTC
    assert "2025-05-03 09:05" in text  # paid_at 01:05 UTC


def test_naive_times_are_taken_as_utc() -> None:
    report = make_report()
    report.generated_at = GENERATED.replace(tzinfo=None)

    assert "2025-06-01 18:30:15（北京时间）" in text_of(render_pdf(report))


def test_the_cjk_font_is_embedded_as_a_subset_with_every_glyph(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        pdf = render_pdf(make_report())

    assert not [r for r in caplog.records if "missing" in r.getMessage()], caplog.text
    descriptors = embedded_fonts(pdf)
    assert descriptors, "no Type0 (TrueType) font"
    for descriptor in descriptors:
        assert "/FontFile2" in descriptor
        assert descriptor["/FontName"].startswith("/MPDFAA+")  # subset tag
        # The whole font file is ~5 MB; the subset of the glyphs used is a small part of it.
        assert len(descriptor["/FontFile2"].get_object().get_data()) < 500_000
    assert len(pdf) < 200_000


def test_the_english_report_has_english_labels() -> None:
    pdf = render_pdf(make_report("en"))

    text = text_of(pdf)
    assert "Account information report" in text
    assert "账户信息报告" not in text
    assert MASKED in text
    assert "Page 1 of " in text
    assert "CNY 30,000.00 → CNY 20,000.00" in text
    assert "The current instalment is due within 3 days" in text
    assert "Example Bank" in text and "示例银行" not in text  # the lender in the report's language
    assert "Mortgage Repayment Account Binding and Auto-debit Agreement, version 2025-06" in text


@pytest.mark.parametrize(
    ("locale", "paused", "changing"), [("zh-CN", "已暂停", "变更中"), ("en", "Paused", "Changing")]
)
def test_a_paused_mandate_and_a_binding_being_changed_read_as_words(
    locale: str, paused: str, changing: str
) -> None:
    report = make_report(locale)
    report.mandates[0].status = "suspended"
    report.binding.status = "changing"
    text = text_of(render_pdf(report))
    assert paused in text and changing in text and "suspended" not in text and "changing" not in text


def test_an_unknown_locale_falls_back_to_chinese() -> None:
    report = make_report()
    report.locale = "fr"

    assert "账户信息报告" in text_of(render_pdf(report))


def test_rendering_is_deterministic_and_dated_from_the_report() -> None:
    report = make_report()

    first, second = render_pdf(report), render_pdf(report.model_copy(deep=True))

    assert first == second
    assert read(first).metadata.creation_date == GENERATED
    assert read(first).metadata.title == "账户信息报告"


@pytest.mark.parametrize("locale", ["zh-CN", "en"])
def test_empty_lists_and_missing_values_render(locale: str) -> None:
    pdf = render_pdf(make_report(locale, empty=True))

    assert len(read(pdf).pages) == 1
    text = text_of(pdf)
    assert MASKED in text
    assert ("无" if locale == "zh-CN" else "None") in text


def test_long_text_wraps_and_long_tables_continue_on_new_pages() -> None:
    report = make_report()
    report.instalments = report.instalments * 12
    long_message = "这是一条非常长的提示信息，" * 15 + "结束"
    report.impact.blockers.append(BlockerOut(code="long", message=long_message, acknowledgeable=False))
    report.binding.repayment_account.lender = "中国工商银行股份有限公司北京市分行营业部个人住房贷款中心" * 2

    pdf = render_pdf(report)

    reader = read(pdf)
    assert len(reader.pages) >= 2
    # The message wraps over several lines (so its text has line breaks) and is printed whole.
    text = text_of(pdf)
    assert long_message not in text
    # Printed whole and in order; a page break may put the footer and header in between.
    remaining = iter(text)
    assert all(char in remaining for char in long_message)
    # Every page keeps inside A4 and has its footer.
    assert all(
        round(float(page.mediabox.width)) == 595 and round(float(page.mediabox.height)) == 842
        for page in reader.pages
    )
    assert all(f"报告校验码：{HASH[:16]}" in page.extract_text() for page in reader.pages)


def test_no_font_is_a_runtime_error_naming_the_package(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="fonts-wqy-microhei"):
        find_cjk_font(((str(tmp_path / "missing.ttc"), 0),))


def test_the_font_is_found_on_this_machine() -> None:
    path, _index = find_cjk_font()

    assert path.is_file()
