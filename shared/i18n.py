"""Message catalogues: the mechanics every service shares; each service keeps its own texts.

A catalogue maps a key to its text in every supported locale (zh-CN, the default, and en). It is
checked when it is built (every key has every locale, and both name the same variables) and renders
strictly: an unknown key or a missing variable is an error, never a blank or a stray `{name}`.

The locale of an answer to a customer is the `Accept-Language` they sent (its first supported
language), else the locale they saved in their preferences (each service that answers customers
keeps a copy, from `PreferencesChanged`), else zh-CN.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from enum import StrEnum
from string import Formatter
from typing import TYPE_CHECKING

from sqlalchemy import String, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import UTCDateTime, utcnow

if TYPE_CHECKING:
    from shared.events import PreferencesChanged
    from shared.uow import UnitOfWork


class Locale(StrEnum):
    ZH_CN = "zh-CN"
    EN = "en"


DEFAULT_LOCALE = Locale.ZH_CN
LOCALES: tuple[str, ...] = tuple(locale.value for locale in Locale)


class MissingText(KeyError):
    """A key the catalogue lacks, or a variable its text needs that was not given."""


def variables(text: str) -> set[str]:
    return {name for _, name, _, _ in Formatter().parse(text) if name}


class Catalogue:
    """Texts by key and locale, rendered strictly."""

    def __init__(self, texts: Mapping[str, Mapping[str, str]]):
        for key, variants in texts.items():
            if set(variants) != set(LOCALES):
                raise ValueError(
                    f"text {key!r} must exist in exactly {', '.join(LOCALES)}, has {sorted(variants)}"
                )
            if len({frozenset(variables(text)) for text in variants.values()}) != 1:
                raise ValueError(f"text {key!r} names different variables in its locales")
        self._texts = {key: dict(variants) for key, variants in texts.items()}

    def __contains__(self, key: object) -> bool:
        return key in self._texts

    def keys(self) -> list[str]:
        return list(self._texts)

    def variables(self, key: str) -> set[str]:
        return variables(self._texts[key][DEFAULT_LOCALE])

    def render(self, key: str, locale: str, /, **values: object) -> str:
        variants = self._texts.get(key)
        if variants is None:
            raise MissingText(f"no text {key!r}")
        text = variants.get(locale) or variants[DEFAULT_LOCALE]
        if missing := variables(text) - values.keys():
            raise MissingText(f"text {key!r} lacks {sorted(missing)}")
        return text.format_map(values)


def negotiate(accept_language: str | None) -> str | None:
    """The first supported language of an Accept-Language header, in quality order; None when the
    header is absent or names none (the saved locale decides then)."""
    if not accept_language:
        return None
    ranked: list[tuple[float, str]] = []
    for part in accept_language.split(",")[:20]:
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        if quality > 0:
            ranked.append((quality, tag.strip().lower()))
    for _, tag in sorted(ranked, key=lambda item: -item[0]):
        if tag.startswith("zh"):
            return Locale.ZH_CN.value
        if tag.startswith("en"):
            return Locale.EN.value
    return None


def resolve(accept_language: str | None, saved: str | None) -> str:
    """Accept-Language, else the customer's saved locale, else zh-CN."""
    return negotiate(accept_language) or (saved if saved in LOCALES else None) or DEFAULT_LOCALE.value


def money(amount: int, locale: str) -> str:
    """An amount in yuan as a customer reads it: `9,700 元`, `CNY 9,700`."""
    return f"{amount:,} 元" if locale == Locale.ZH_CN else f"CNY {amount:,}"


def join(items: list[str], locale: str) -> str:
    """A short list in running text: `短信验证码和设备验证`, `an SMS code and a device check`."""
    if len(items) < 2:
        return "".join(items)
    conjunction = "和" if locale == Locale.ZH_CN else " and "
    separator = "、" if locale == Locale.ZH_CN else ", "
    return separator.join(items[:-1]) + conjunction + items[-1]


class CustomerLocaleMixin:
    """Columns of a service's copy of each customer's saved locale (from `PreferencesChanged`)."""

    __tablename__ = "customer_locales"

    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    locale: Mapped[str] = mapped_column(String(8))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


def saved_locales(model: type[CustomerLocaleMixin]) -> Callable[[AsyncSession, str], Awaitable[str | None]]:
    """How a service finds a customer's saved locale in its copy (`build_service_app(saved_locale=...)`)."""

    async def saved_locale(session: AsyncSession, user_id: str) -> str | None:
        return await session.scalar(select(model.locale).where(model.user_id == user_id))

    return saved_locale


def remember_locales(model: type[CustomerLocaleMixin]) -> Callable[..., Awaitable[None]]:
    """The handler of `PreferencesChanged` for a service that keeps a copy of the saved locales."""

    async def on_preferences_changed(uow: UnitOfWork, deps: object, event: PreferencesChanged) -> None:
        row = await uow.session.get(model, event.user_id)
        if row is None:
            uow.session.add(model(user_id=event.user_id, locale=event.locale, updated_at=utcnow()))
        else:
            row.locale, row.updated_at = event.locale, utcnow()

    return on_preferences_changed
