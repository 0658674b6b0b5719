"""Repayment account numbers: one spelling per account, so the same account cannot pass for another.

A number is normalised before it is stored or compared: Unicode NFKC (full-width `６２２２` becomes
`6222`, an ideographic space a space), then separators (white space, dashes, dots) are removed;
what is left must be 12 to 19 ASCII digits, anything else is refused. Numbers of 16 to 19 digits
are card numbers (ISO/IEC 7812: UnionPay debit cards are 16 to 19 digits): their last digit is a
Luhn check digit, and they do not start with 0 (no bank card does, and a leading 0 keeps the check
digit valid, so it would make a second spelling of the same card). Shorter numbers are bank account
numbers, which have no check digit common to every bank.
"""

from __future__ import annotations

import unicodedata

ACCOUNT_LENGTHS = range(12, 20)
CARD_LENGTHS = range(16, 20)
_SEPARATORS = frozenset(" .-")


def normalise_account_number(value: str) -> str:
    """The canonical digits of an account number; ValueError (a message for the customer) if it is not one."""
    folded = unicodedata.normalize("NFKC", value)
    digits = "".join(
        ch for ch in folded if not (ch in _SEPARATORS or ch.isspace() or unicodedata.category(ch) == "Pd")
    )
    # str.isdigit() accepts other scripts' digits (Arabic-Indic, Devanagari...): only 0-9 count.
    if not digits.isascii() or not digits.isdigit():
        raise ValueError("must be digits, optionally separated by spaces, dashes or dots")
    if len(digits) not in ACCOUNT_LENGTHS:
        raise ValueError("must be 12 to 19 digits")
    if len(digits) in CARD_LENGTHS and (digits[0] == "0" or not luhn_valid(digits)):
        raise ValueError("is not a valid card number (16 to 19 digits carry a check digit)")
    return digits


def luhn_valid(digits: str) -> bool:
    return _luhn_sum(digits) % 10 == 0


def with_check_digit(body: str) -> str:
    """`body` followed by its Luhn check digit: a valid card number when the result has 16 to 19 digits."""
    return body + str(-_luhn_sum(body + "0") % 10)


def _luhn_sum(digits: str) -> int:
    total = 0
    for position, ch in enumerate(reversed(digits)):
        value = int(ch)
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total
