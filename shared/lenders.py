"""The lender directory: the lenders whose mortgage repayment accounts can be bound (all fictional).

A lender is named by its code everywhere but in words to a customer: on the event stream (a code,
not free text), in binding's tables and in its API input. The directory gives its name in each
locale and its customer-service hotline, for the notices that name the account and the follow-up
after an unbind. Binding owns which lenders exist (a binding names one of these); notification
reads the names, so the directory is here rather than copied into both.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.i18n import DEFAULT_LOCALE


@dataclass(frozen=True)
class Lender:
    code: str
    names: dict[str, str]  # locale -> name
    hotline: str

    def name(self, locale: str) -> str:
        return self.names.get(locale) or self.names[DEFAULT_LOCALE]


DIRECTORY: dict[str, Lender] = {
    lender.code: lender
    for lender in (
        Lender("EXAMPLE_BANK", {"zh-CN": "示例银行", "en": "Example Bank"}, "400-000-9555"),
        Lender("LIGHTHOUSE_BANK", {"zh-CN": "灯塔银行", "en": "Lighthouse Bank"}, "400-000-9566"),
        Lender("RIVERSIDE_RURAL_BANK", {"zh-CN": "江畔农商银行", "en": "Riverside Rural Bank"}, "400-000-9577"),
    )
}


def find(code_or_name: str) -> Lender | None:
    """The lender a customer named: by its code, or by its name in any locale (case and spacing aside)."""
    wanted = " ".join(code_or_name.split()).casefold()
    for lender in DIRECTORY.values():
        if wanted == lender.code.casefold() or wanted in {name.casefold() for name in lender.names.values()}:
            return lender
    return None


def name(code: str, locale: str) -> str:
    """The lender's name in `locale`; KeyError for a code the directory does not have."""
    return DIRECTORY[code].name(locale)
