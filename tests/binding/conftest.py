"""What the binding tests share: the binding service alone, with its workers off."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest

from tests.stack import Stack, on_memory_bus


def binding_alone(database_urls: dict[str, str], var_dir: Path) -> AbstractAsyncContextManager[Stack]:
    """Binding on the in-memory bus, workers off: a test looks at what one request leaves behind."""
    overrides = {"binding": {"run_workers": False}}
    return on_memory_bus(database_urls, var_dir, ("binding",), overrides=overrides)


@pytest.fixture
async def stack(database_urls: dict[str, str], tmp_path: Path) -> AsyncIterator[Stack]:
    async with binding_alone(database_urls, tmp_path) as running:
        yield running
