"""Masking of account and phone numbers for every API response and message."""

from __future__ import annotations


def mask_account_number(number: str) -> str:
    """`6222021234564821` -> `6222 **** **** 4821`: enough to recognise, never enough to use."""
    digits = "".join(ch for ch in number if ch.isdigit())
    if len(digits) < 8:
        return "****"
    return f"{digits[:4]} **** **** {digits[-4:]}"


def mask_phone(phone: str) -> str:
    """`+8613812345678` -> `138****5678`."""
    digits = "".join(ch for ch in phone if ch.isdigit())
    if digits.startswith("86") and len(digits) == 13:
        digits = digits[2:]
    if len(digits) < 7:
        return "****"
    return f"{digits[:3]}****{digits[-4:]}"
