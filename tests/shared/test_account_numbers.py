"""Account numbers: one spelling per account, card numbers checked."""

from __future__ import annotations

import pytest

from shared.account_numbers import luhn_valid, normalise_account_number, with_check_digit

CARD = "6222021234514821"


@pytest.mark.parametrize(
    "spelling",
    [
        CARD,
        "6222 0212 3451 4821",
        "6222-0212-3451-4821",
        "6222.0212.3451.4821",
        "６２２２０２１２３４５１４８２１",  # full-width digits
        "６２２２　０２１２　３４５１　４８２１",  # full-width digits, ideographic spaces
        "6222－0212－3451－4821",  # full-width hyphen-minus
        "6222\u20130212\u20143451\u20104821",  # en dash, em dash, hyphen
        "\u00a06222 0212 3451 4821\t",
    ],
)
def test_every_spelling_of_a_number_is_the_same_number(spelling: str) -> None:
    assert normalise_account_number(spelling) == CARD


@pytest.mark.parametrize(
    "value",
    [
        "6222021234514822",  # the check digit is wrong
        "06222021234514821",  # a leading 0 keeps the check digit valid: a second spelling of the card
        "٦٢٢٢٠٢١٢٣٤٥١٤٨٢١",  # Arabic-Indic digits: digits, but not ASCII ones once NFKC is done
        "6222x0212345148210",
        "6222/0212/3451/4821",
        "62220212345",  # 11 digits
        "62220212345148210000",  # 20 digits
        "",
    ],
)
def test_anything_else_is_refused(value: str) -> None:
    with pytest.raises(ValueError):
        normalise_account_number(value)


def test_bank_account_numbers_of_12_to_15_digits_carry_no_check_digit() -> None:
    assert normalise_account_number("0110 2345 6789 012") == "011023456789012"


def test_check_digit() -> None:
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert [with_check_digit(body) for body in ("411111111111111", "622202123451482")] == [
        "4111111111111111",
        CARD,
    ]
