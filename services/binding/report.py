"""The account information report as a PDF (A4), in the report's locale (zh-CN or en).

The customer is advised to download it before unbinding: it records the binding, the two
accounts, the mandates, the instalments and the assessed impact of unbinding.

Chinese text needs a CJK TrueType font, embedded (as a subset) in every document. It comes
from the Debian package `fonts-wqy-microhei` (installed by deploy/install-system-deps.sh);
without it `render_pdf` raises RuntimeError naming the package, which the API turns into 503.

The output is deterministic: the document's creation date is the report's `generated_at`,
so the same report renders to the same bytes.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from fpdf import FPDF, FontFace
from fpdf.enums import Align, TableBordersLayout, TextMode, XPos, YPos

from services.binding.schemas import AccountReport, InstalmentOut

SHANGHAI = ZoneInfo("Asia/Shanghai")

CJK_FONT_PACKAGE = "fonts-wqy-microhei"
# TrueType fonts with Chinese and Latin glyphs, in order of preference: (path, index of the
# face in a TrueType collection). The first is the one deploy/install-system-deps.sh installs.
CJK_FONT_CANDIDATES: tuple[tuple[str, int], ...] = (
    ("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc", 0),  # fonts-wqy-microhei
    ("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc", 0),  # fonts-wqy-zenhei
)

FONT = "cjk"
NAVY = (16, 52, 98)
INK = (33, 37, 41)
MUTED = (108, 117, 125)
RULE = (206, 212, 218)
LABEL_FILL = (243, 246, 250)
ROW_FILL = (248, 249, 251)
WARN = (176, 42, 55)
OK = (25, 118, 72)

MARGIN = 18.0
DASH = "—"


@functools.cache
def find_cjk_font(candidates: tuple[tuple[str, int], ...] = CJK_FONT_CANDIDATES) -> tuple[Path, int]:
    """The first CJK TrueType font found (path, collection index); RuntimeError when none is."""
    for path, index in candidates:
        if Path(path).is_file():
            return Path(path), index
    tried = ", ".join(path for path, _ in candidates)
    raise RuntimeError(
        f"no CJK font for the account report PDF: install the Debian package {CJK_FONT_PACKAGE} "
        f"(deploy/install-system-deps.sh does), looked for {tried}"
    )


LABELS: dict[str, dict[str, str]] = {
    "zh-CN": {
        "title": "账户信息报告",
        "generated": "生成时间",
        "customer": "客户号",
        "binding": "绑定信息",
        "binding_id": "绑定编号",
        "status": "状态",
        "created": "绑定时间",
        "auto_debit": "自动扣款",
        "contribution": "绑定带来的额度",
        "agreement": "服务协议",
        "agreement_value": "《{title}》{version} 版",
        "credit_account": "信用账户",
        "credit_account_id": "信用账户编号",
        "credit_limit": "当前信用额度",
        "repayment_account": "房贷还款账户",
        "lender": "贷款机构",
        "account_number": "还款账号",
        "monthly_instalment": "月供金额",
        "due_day": "每月还款日",
        "due_day_value": "每月 {day} 日",
        "mandates": "代扣授权",
        "kind": "授权类型",
        "since": "生效时间",
        "cancelled": "取消时间",
        "instalments": "还款计划与记录",
        "period": "期数",
        "amount": "金额",
        "due_date": "到期日",
        "paid": "还款时间 / 方式",
        "impact": "解绑影响评估",
        "assessed": "评估时间",
        "credit_record_effect": "对征信记录的影响",
        "current_instalment": "当期账单",
        "current_instalment_value": "{period} 期，{amount}，{due} 到期（{status}）",
        "auto_debit_now": "自动扣款（当前）",
        "limit_change": "信用额度变化",
        "benefits_lost": "解绑后将失去的权益",
        "blockers": "需要注意的事项",
        "acknowledgeable": "确认后可继续解绑",
        "blocking": "须先处理",
        "none": "无",
        "on": "已开启",
        "off": "未开启",
        "times_note": "本报告中的时间均为北京时间。本报告由系统自动生成，请妥善保管。",
        "zone": "（北京时间）",
        "page": "第 {page} / {pages} 页",
        "check": "报告校验码：{hash}",
        "money": "¥{amount}",
    },
    "en": {
        "title": "Account information report",
        "generated": "Generated",
        "customer": "Customer ID",
        "binding": "Binding",
        "binding_id": "Binding ID",
        "status": "Status",
        "created": "Created",
        "auto_debit": "Auto-debit",
        "contribution": "Limit from binding",
        "agreement": "Agreement",
        "agreement_value": "{title}, version {version}",
        "credit_account": "Credit account",
        "credit_account_id": "Account ID",
        "credit_limit": "Credit limit",
        "repayment_account": "Mortgage repayment account",
        "lender": "Lender",
        "account_number": "Account number",
        "monthly_instalment": "Monthly instalment",
        "due_day": "Due day",
        "due_day_value": "Day {day} of each month",
        "mandates": "Mandates",
        "kind": "Kind",
        "since": "Since",
        "cancelled": "Cancelled",
        "instalments": "Instalments",
        "period": "Period",
        "amount": "Amount",
        "due_date": "Due date",
        "paid": "Paid at / by",
        "impact": "Impact of unbinding",
        "assessed": "Assessed",
        "credit_record_effect": "Credit record effect",
        "current_instalment": "Current instalment",
        "current_instalment_value": "{period}, {amount}, due {due} ({status})",
        "auto_debit_now": "Auto-debit (now)",
        "limit_change": "Credit limit",
        "benefits_lost": "Benefits lost",
        "blockers": "Blockers",
        "acknowledgeable": "You can go on once you confirm it",
        "blocking": "Resolve this first",
        "none": "None",
        "on": "On",
        "off": "Off",
        "times_note": (
            "All times are China Standard Time (UTC+08:00). This report was generated automatically; please "
            "keep it for your records."
        ),
        "zone": " China Standard Time ({offset})",
        "page": "Page {page} of {pages}",
        "check": "Report check: {hash}",
        "money": "CNY {amount}",
    },
}

VALUES: dict[str, dict[str, str]] = {
    "zh-CN": {
        "pending": "待确认",
        "failed": "未绑定成功",
        "refused": "已被拒绝",
        "active": "生效中",
        "unbinding": "解绑中",
        "changing": "变更中",
        "suspended": "已暂停",
        "unbound": "已解绑",
        "cancelled": "已取消",
        "auto_debit": "自动扣款",
        "manual": "主动还款",
        "unpaid": "未还款",
        "paid": "已还款",
        "overdue": "已逾期",
    },
    "en": {
        "pending": "Pending",
        "failed": "Not bound",
        "refused": "Refused",
        "active": "Active",
        "unbinding": "Unbinding",
        "changing": "Changing",
        "suspended": "Paused",
        "unbound": "Unbound",
        "cancelled": "Cancelled",
        "auto_debit": "Auto-debit",
        "manual": "Manual",
        "unpaid": "Unpaid",
        "paid": "Paid",
        "overdue": "Overdue",
    },
}


def _locale(value: str | None) -> str:
    return "en" if (value or "").lower().startswith("en") else "zh-CN"


def _aware(value: datetime) -> datetime:
    """Naive datetimes are UTC (as the services store them)."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _offset(value: datetime) -> str:
    raw = value.strftime("%z")  # +0800
    return f"UTC{raw[:3]}:{raw[3:]}" if raw else "UTC"


class _Text:
    """Formatting in one locale."""

    def __init__(self, locale: str) -> None:
        self.locale = locale
        self.labels = LABELS[locale]
        self.values = VALUES[locale]

    def __getitem__(self, key: str) -> str:
        return self.labels[key]

    def value(self, raw: str | None) -> str:
        if raw is None or raw == "":
            return DASH
        return self.values.get(raw, raw)

    def status(self, raw: str | None) -> tuple[str, tuple[int, int, int]]:
        """A status and the colour to print it in."""
        return self.value(raw), WARN if raw == "overdue" else MUTED if raw in (
            "cancelled",
            "unbound",
            "failed",
            "refused",
        ) else INK

    def money(self, amount: int | None) -> str:
        return DASH if amount is None else self.labels["money"].format(amount=f"{amount:,.2f}")

    def on_off(self, flag: bool) -> str:
        return self.labels["on" if flag else "off"]

    @staticmethod
    def text(value: object) -> str:
        return DASH if value is None or value == "" else str(value)

    @staticmethod
    def when(value: datetime | None) -> str:
        return DASH if value is None else _aware(value).astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")

    @staticmethod
    def day(value: date | None) -> str:
        return DASH if value is None else value.isoformat()

    def generated(self, value: datetime) -> str:
        local = _aware(value).astimezone(SHANGHAI)
        return f"{local:%Y-%m-%d %H:%M:%S}" + self.labels["zone"].format(offset=_offset(local))

    def paid(self, instalment: InstalmentOut) -> str:
        if instalment.paid_at is None and instalment.paid_by is None:
            return DASH
        parts = [self.when(instalment.paid_at)] if instalment.paid_at is not None else []
        if instalment.paid_by:
            parts.append(self.value(instalment.paid_by))
        return " · ".join(parts)


class _ReportPDF(FPDF):
    """A4 with a navy band on top of every page and a footer: impact hash and page numbers."""

    def __init__(self, text: _Text, impact_hash: str) -> None:
        super().__init__(orientation="P", unit="mm", format="A4")
        self._text = text
        self._hash = (impact_hash or "")[:16] or DASH
        self._title = text["title"]

    def header(self) -> None:
        with self.local_context(fill_color=NAVY):
            self.rect(0, 0, self.w, 4, style="F")
        if self.page_no() > 1:
            with self.local_context(font_size_pt=8, text_color=MUTED):
                self.set_xy(MARGIN, 8)
                self.cell(self.epw, 4, self._title, align=Align.R)
            self.set_y(self.t_margin)

    def footer(self) -> None:
        self.set_y(-14)
        with self.local_context(draw_color=RULE, line_width=0.2):
            self.line(MARGIN, self.get_y(), self.w - MARGIN, self.get_y())
        self.set_y(-12)
        with self.local_context(font_size_pt=8, text_color=MUTED):
            self.cell(self.epw / 2, 5, self._text["check"].format(hash=self._hash), align=Align.L)
            self.cell(
                self.epw / 2, 5, self._text["page"].format(page=self.page_no(), pages="{nb}"), align=Align.R
            )


def _bold(pdf: FPDF, text: str, *, size: float, color: tuple[int, int, int], h: float) -> None:
    """One line of heading text; the font has no bold face, so the glyphs are also stroked."""
    with pdf.local_context(
        font_size_pt=size,
        text_color=color,
        draw_color=color,
        line_width=size * 0.012,
        text_mode=TextMode.FILL_STROKE,
    ):
        pdf.multi_cell(pdf.epw, h, text, align=Align.L, new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def _section(pdf: FPDF, title: str) -> None:
    # Keep a heading with at least a few lines of its content.
    if pdf.will_page_break(24):
        pdf.add_page()
    pdf.ln(4)
    y = pdf.get_y()
    with pdf.local_context(fill_color=NAVY):
        pdf.rect(MARGIN, y + 0.8, 1.2, 4.6, style="F")
    pdf.set_x(MARGIN + 3)
    with pdf.local_context(
        font_size_pt=11.5, text_color=NAVY, draw_color=NAVY, line_width=0.14, text_mode=TextMode.FILL_STROKE
    ):
        pdf.cell(pdf.epw - 3, 6.2, title, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    with pdf.local_context(draw_color=RULE, line_width=0.2):
        pdf.line(MARGIN, pdf.get_y() + 0.6, pdf.w - MARGIN, pdf.get_y() + 0.6)
    pdf.ln(2.4)


def _fields(pdf: FPDF, rows: Sequence[Sequence[tuple[str, str]]]) -> None:
    """Label/value pairs, two pairs a row; a row of one pair spans the whole width."""
    label_style = FontFace(color=MUTED, fill_color=LABEL_FILL)
    value_style = FontFace(color=INK)
    with pdf.local_context(font_size_pt=9, draw_color=RULE, line_width=0.2):
        with pdf.table(
            col_widths=(19, 31, 19, 31),
            first_row_as_headings=False,
            borders_layout=TableBordersLayout.HORIZONTAL_LINES,
            text_align=Align.L,
            v_align="MIDDLE",
            line_height=4.6,
            padding=(1.4, 2.2),
        ) as table:
            for pairs in rows:
                row = table.row()
                for label, value in pairs:
                    row.cell(label, style=label_style)
                    row.cell(value, style=value_style, colspan=3 if len(pairs) == 1 else 1)


Cell = str | tuple[str, tuple[int, int, int]]


def _grid(
    pdf: FPDF,
    text: _Text,
    headings: Sequence[str],
    rows: Sequence[Sequence[Cell]],
    *,
    widths: Sequence[float],
    aligns: Sequence[Align],
) -> None:
    """A table with a heading row (repeated on a new page); a muted "none" when there are no rows.
    A cell is its text, or (text, colour)."""
    if not rows:
        _empty(pdf, text)
        return
    with pdf.local_context(font_size_pt=9, draw_color=RULE, line_width=0.2):
        with pdf.table(
            col_widths=tuple(widths),
            borders_layout=TableBordersLayout.HORIZONTAL_LINES,
            headings_style=FontFace(emphasis="", color=(255, 255, 255), fill_color=NAVY, size_pt=8.5),
            text_align=tuple(aligns),
            v_align="MIDDLE",
            line_height=4.6,
            padding=(1.4, 2.2),
            cell_fill_color=ROW_FILL,
            cell_fill_mode="ROWS",
            repeat_headings=1,
        ) as table:
            table.row(list(headings))
            for cells in rows:
                row = table.row()
                for cell in cells:
                    value, color = cell if isinstance(cell, tuple) else (cell, INK)
                    row.cell(value, style=FontFace(color=color))


def _empty(pdf: FPDF, text: _Text) -> None:
    with pdf.local_context(font_size_pt=9, text_color=MUTED):
        pdf.set_x(MARGIN + 2.2)
        pdf.cell(pdf.epw - 2.2, 6, text["none"], new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def _items(pdf: FPDF, text: _Text, items: Sequence[tuple[str, str, tuple[int, int, int] | None]]) -> None:
    """A list of entries: a bullet, the (wrapped) text, and a small note line (what to do about it), if
    any."""
    if not items:
        _empty(pdf, text)
        return
    indent = 6.0
    for body, note, note_color in items:
        if pdf.will_page_break(10):
            pdf.add_page()
        y = pdf.get_y()
        with pdf.local_context(fill_color=NAVY):
            pdf.rect(MARGIN + 2.4, y + 2.0, 1.2, 1.2, style="F")
        pdf.set_x(MARGIN + indent)
        with pdf.local_context(font_size_pt=9.5, text_color=INK):
            pdf.multi_cell(pdf.epw - indent, 5, body, align=Align.L, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        if note:
            pdf.set_x(MARGIN + indent)
            with pdf.local_context(font_size_pt=7.5, text_color=note_color or MUTED):
                pdf.multi_cell(pdf.epw - indent, 4, note, align=Align.L, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.ln(1.2)


def _subheading(pdf: FPDF, title: str) -> None:
    # Keep the heading with its first entry.
    if pdf.will_page_break(22):
        pdf.add_page()
    pdf.ln(2.5)
    _bold(pdf, title, size=9.5, color=INK, h=5.5)
    pdf.ln(0.5)


def render_pdf(report: AccountReport) -> bytes:
    """The account information report as PDF bytes (A4, labels in `report.locale`).

    Raises RuntimeError when no CJK font is installed (see `find_cjk_font`)."""
    font_path, font_index = find_cjk_font()
    text = _Text(_locale(report.locale))
    binding = report.binding
    impact = report.impact

    pdf = _ReportPDF(text, impact.impact_hash)
    pdf.set_margins(MARGIN, MARGIN + 2, MARGIN)
    pdf.set_auto_page_break(True, margin=20)
    pdf.add_font(FONT, "", str(font_path), collection_font_number=font_index)
    pdf.set_font(FONT, "", 10)
    pdf.set_text_color(*INK)
    pdf.set_creation_date(_aware(report.generated_at))
    pdf.set_title(text["title"])
    pdf.set_subject(f"{text['binding_id']}: {binding.id}")
    pdf.set_lang(text.locale)
    pdf.set_creator("unbind binding service")

    pdf.add_page()
    # Title block
    _bold(pdf, text["title"], size=20, color=NAVY, h=10)
    pdf.ln(1)
    with pdf.local_context(font_size_pt=9, text_color=MUTED):
        meta = (
            f"{text['generated']}：{text.generated(report.generated_at)}"
            if text.locale == "zh-CN"
            else f"{text['generated']}: {text.generated(report.generated_at)}"
        )
        pdf.multi_cell(pdf.epw, 4.8, meta, align=Align.L, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        sep = "：" if text.locale == "zh-CN" else ": "
        pdf.multi_cell(
            pdf.epw,
            4.8,
            f"{text['customer']}{sep}{text.text(report.user_id)}",
            align=Align.L,
            new_x=XPos.LMARGIN,
            new_y=YPos.NEXT,
        )
    pdf.ln(1.5)
    with pdf.local_context(draw_color=NAVY, line_width=0.5):
        pdf.line(MARGIN, pdf.get_y(), pdf.w - MARGIN, pdf.get_y())
    pdf.ln(1)

    _section(pdf, text["binding"])
    _fields(
        pdf,
        [
            [(text["binding_id"], text.text(binding.id)), (text["status"], text.value(binding.status))],
            [
                (text["created"], text.when(binding.created_at)),
                (text["auto_debit"], text.on_off(binding.auto_debit)),
            ],
            [(text["contribution"], text.money(binding.credit_limit_contribution))],
            [
                (
                    text["agreement"],
                    text["agreement_value"].format(
                        title=text.text(impact.agreement.title), version=text.text(impact.agreement.version)
                    ),
                )
            ],
        ],
    )

    credit = binding.credit_account
    _section(pdf, text["credit_account"])
    _fields(
        pdf,
        [
            [
                (text["credit_account_id"], text.text(credit.id)),
                (text["credit_limit"], text.money(credit.credit_limit)),
            ]
        ],
    )

    repayment = binding.repayment_account
    _section(pdf, text["repayment_account"])
    _fields(
        pdf,
        [
            # The account number is masked upstream: it is printed exactly as given.
            [
                (text["lender"], text.text(repayment.lender)),
                (text["account_number"], text.text(repayment.account_number)),
            ],
            [
                (text["monthly_instalment"], text.money(repayment.monthly_instalment)),
                (
                    text["due_day"],
                    text["due_day_value"].format(day=repayment.due_day) if repayment.due_day else DASH,
                ),
            ],
        ],
    )

    _section(pdf, text["mandates"])
    _grid(
        pdf,
        text,
        [text["kind"], text["status"], text["since"], text["cancelled"]],
        [
            [text.value(m.kind), text.status(m.status), text.when(m.created_at), text.when(m.cancelled_at)]
            for m in report.mandates
        ],
        widths=(28, 20, 26, 26),
        aligns=(Align.L, Align.L, Align.L, Align.L),
    )

    _section(pdf, text["instalments"])
    _grid(
        pdf,
        text,
        [text["period"], text["amount"], text["due_date"], text["status"], text["paid"]],
        [
            [
                text.text(i.period),
                text.money(i.amount),
                text.day(i.due_date),
                text.status(i.status),
                text.paid(i),
            ]
            for i in report.instalments
        ],
        widths=(14, 20, 18, 14, 34),
        aligns=(Align.L, Align.R, Align.L, Align.L, Align.L),
    )

    _section(pdf, text["impact"])
    current = impact.current_instalment
    current_text = (
        text["current_instalment_value"].format(
            period=text.text(current.period),
            amount=text.money(current.amount),
            due=text.day(current.due_date),
            status=text.value(current.status),
        )
        if current is not None
        else DASH
    )
    _fields(
        pdf,
        [
            [
                (text["assessed"], text.when(impact.assessed_at)),
                (text["auto_debit_now"], text.on_off(impact.auto_debit)),
            ],
            [
                (
                    text["limit_change"],
                    f"{text.money(impact.credit_limit_before)} → {text.money(impact.credit_limit_after)}",
                )
            ],
            [(text["current_instalment"], current_text)],
        ],
    )
    _subheading(pdf, text["credit_record_effect"])
    with pdf.local_context(font_size_pt=9.5, text_color=INK):
        pdf.set_x(MARGIN + 2.2)
        pdf.multi_cell(
            pdf.epw - 2.2,
            5,
            text.text(impact.credit_record_effect),
            align=Align.L,
            new_x=XPos.LMARGIN,
            new_y=YPos.NEXT,
        )

    _subheading(pdf, text["benefits_lost"])
    _items(pdf, text, [(text.text(b.description), "", None) for b in impact.benefits_lost])

    _subheading(pdf, text["blockers"])
    _items(
        pdf,
        text,
        [
            (
                text.text(b.message),
                text["acknowledgeable"] if b.acknowledgeable else text["blocking"],
                OK if b.acknowledgeable else WARN,
            )
            for b in impact.blockers
        ],
    )

    pdf.ln(5)
    with pdf.local_context(font_size_pt=7.5, text_color=MUTED):
        pdf.multi_cell(pdf.epw, 4, text["times_note"], align=Align.L, new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    return bytes(pdf.output())
