"""Messages in the connection's language, from the gettext catalogs."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from ordercast.web.text import PAGE_TEXT, page_text
from ordercast.wire.messages import (
    EVENT_MESSAGES,
    LANGUAGES,
    match_language,
    message_for,
    negotiate_language,
    parse_accept_language,
    translate,
)

LOCALE = Path(__file__).resolve().parents[2] / "ordercast" / "locale"
TRANSLATED = ("zh-Hans", "es", "pt")


def test_each_language_has_its_own_message() -> None:
    accepted = {lang: message_for("order.accepted", {}, lang) for lang in LANGUAGES}

    assert accepted == {
        "en": "The restaurant accepted your order and is preparing it",
        "zh-Hans": "餐厅已接单，正在为您准备",
        "es": "El restaurante aceptó tu pedido y lo está preparando",
        "pt": "O restaurante aceitou seu pedido e está preparando",
    }


@pytest.mark.parametrize("lang", TRANSLATED)
def test_every_message_and_page_word_is_translated(lang: str) -> None:
    sources = [*EVENT_MESSAGES.values(), *PAGE_TEXT.values()]

    untranslated = [text for text in sources if translate(text, lang) == text]

    assert untranslated == []


def test_placeholders_survive_translation() -> None:
    for lang in LANGUAGES:
        words = page_text(lang)
        assert "{orderId}" in words["order"]
        assert "{minutes}" in words["eta.in"]
        assert "{time}" in words["eta.at"]


def test_a_string_missing_from_a_catalog_reads_in_english() -> None:
    assert translate("A sentence no catalog has", "es") == "A sentence no catalog has"


@pytest.mark.parametrize(
    ("tag", "language"),
    [
        ("en", "en"),
        ("en-GB", "en"),
        ("ES-mx", "es"),
        ("pt-BR", "pt"),
        ("pt_PT", "pt"),
        ("zh", "zh-Hans"),
        ("zh-CN", "zh-Hans"),
        ("zh-Hans-SG", "zh-Hans"),
        ("zh-TW", None),
        ("zh-Hant", None),
        ("zh-HK", None),
        ("fr", None),
        ("", None),
        (None, None),
    ],
)
def test_tags_match_a_supported_language(tag: str | None, language: str | None) -> None:
    assert match_language(tag) == language


def test_accept_language_is_read_with_its_weights() -> None:
    header = "fr-CH, fr;q=0.9, en;q=0.8, de;q=0.7, *;q=0.5, it;q=0"

    assert parse_accept_language(header) == [
        ("fr-CH", 1.0),
        ("fr", 0.9),
        ("en", 0.8),
        ("de", 0.7),
        ("*", 0.5),
    ]


def test_accept_language_ranges_are_ordered_by_weight_not_position() -> None:
    assert parse_accept_language("es;q=0.2, pt;q=0.9, zh") == [
        ("zh", 1.0),
        ("pt", 0.9),
        ("es", 0.2),
    ]


@pytest.mark.parametrize(
    "header", ["en;q=abc", "en;q=2", "en;q=-1", ";q=1", ",,", "   "]
)
def test_malformed_accept_language_ranges_are_ignored(header: str) -> None:
    assert negotiate_language(None, header) == "en"
    assert all(weight > 0 for _, weight in parse_accept_language(header))


@pytest.mark.parametrize(
    ("lang", "header", "language"),
    [
        (None, "fr-CH, fr;q=0.9, es;q=0.8, en;q=0.7", "es"),
        (None, "zh-TW, zh;q=0.5, en;q=0.4", "zh-Hans"),
        (None, "de, *;q=0.1", "en"),
        (None, "pt;q=0, es;q=0.5", "es"),
        ("pt-BR", "es", "pt"),
        ("xx", "es;q=0.3", "es"),
        (None, None, "en"),
    ],
)
def test_lang_parameter_wins_then_the_best_header_range(
    lang: str | None, header: str | None, language: str
) -> None:
    assert negotiate_language(lang, header) == language


@pytest.mark.parametrize("folder", ["en", "zh_Hans", "es", "pt"])
def test_committed_catalogs_are_compiled_from_their_sources(folder: str) -> None:
    messages = LOCALE / folder / "LC_MESSAGES"
    with (messages / "ordercast.po").open("rb") as source:
        catalog = read_po(source)
    compiled = io.BytesIO()

    write_mo(compiled, catalog)

    assert compiled.getvalue() == (messages / "ordercast.mo").read_bytes()


def test_catalogs_hold_every_marked_string() -> None:
    with (LOCALE / "ordercast.pot").open("rb") as template:
        marked = {message.id for message in read_po(template) if message.id}

    assert marked == {*EVENT_MESSAGES.values(), *PAGE_TEXT.values()}
