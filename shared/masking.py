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


# What ops type to find a customer by phone: the masked form every view shows.
MASKED_PHONE_PATTERN = r"^1[0-9]{2}\*{4}[0-9]{4}$"


def phone_key(phone: str) -> str:
    """What is left of a phone number once masked, as a lookup key: `+8613812345678` -> `1385678`
    (also from `138****5678`), so ops can find a customer by the masked number alone."""
    masked = mask_phone(phone) if "*" not in phone else phone
    return masked.replace("*", "")


def mask_email(email: str) -> str:
    """`zhangsan@example.com` -> `z***@example.com`."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}" if domain else "****"
