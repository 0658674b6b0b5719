"""Synthetic customers for load and chaos runs: many of them, each with one active mortgage
binding and a phone the development SMS gateway writes to. Every number is fictional.

`unbind chaos` and `unbind bench` create them through `tools.services.seed_population`, which
writes each service's part (tools/seeds.py, `POPULATION`).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from shared.account_numbers import with_check_digit


@dataclass(frozen=True, slots=True)
class SyntheticCustomer:
    user_id: str
    phone: str
    binding_id: str
    account_number: str
    monthly_instalment: int = 6500


def synthetic_customers(count: int, run_id: str) -> list[SyntheticCustomer]:
    """`count` customers whose ids, phones and account numbers are unique to `run_id`."""
    run_tag = zlib.crc32(run_id.encode())
    base = run_tag % 10**6 * 100
    customers = []
    for index in range(count):
        number = (base + index) % 10**8
        customers.append(
            SyntheticCustomer(
                user_id=f"u-{run_id}-{index}",
                phone=f"+86139{number:08d}",
                binding_id=f"b-{run_id}-{index}",
                # The run's checksum and the index: unique across runs, a valid 19-digit card number.
                account_number=with_check_digit(f"6{run_tag:010d}{index:07d}"),
            )
        )
    return customers
