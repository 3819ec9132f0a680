"""Which text analysis fits an article's language: the Snowball stemmer and
stop-word list for an ISO 639-1 code. A pure lookup, shared by the search
index (documents) and search (queries), so both sides stem alike."""

from __future__ import annotations

import re

# ISO 639-1 -> Snowball stemmer name (the languages tantivy's stemmer has).
STEMMERS: dict[str, str] = {
    "ar": "arabic", "da": "danish", "de": "german", "el": "greek", "en": "english", "es": "spanish",
    "fi": "finnish", "fr": "french", "hu": "hungarian", "it": "italian", "nl": "dutch", "no": "norwegian",
    "nb": "norwegian", "nn": "norwegian", "pt": "portuguese", "ro": "romanian", "ru": "russian",
    "sv": "swedish", "ta": "tamil", "tr": "turkish",
}
# The stop-word lists that ship with the stemmers (a subset of them).
STOPWORDS: frozenset[str] = frozenset({
    "danish", "dutch", "english", "finnish", "french", "german", "hungarian", "italian", "norwegian",
    "portuguese", "russian", "spanish", "swedish",
})
OTHER = "xx"  # analyzer key of text in a language without a stemmer, or of unknown language


def analyzer_key(language: str | None) -> str:
    """The analyzer (and index fields) for text in `language`: its ISO code
    when a stemmer covers it, else OTHER (lowercased and accent-folded only)."""
    code = (language or "").strip().lower()[:2]
    name = STEMMERS.get(code)
    return _CANONICAL[name] if name else OTHER


_CANONICAL: dict[str, str] = {}
for _code, _name in STEMMERS.items():
    _CANONICAL.setdefault(_name, _code)  # norwegian is "no", whether nb or nn


def analyzer_keys() -> list[str]:
    """Every analyzer key, one per stemmer, OTHER last."""
    return sorted(_CANONICAL.values()) + [OTHER]


_WORD = re.compile(r"\w+")


def plain_query(text: str) -> str:
    """The words of a user's query, lowercased, without query-language syntax
    (quotes, colons, AND/OR, +/-): a search box, not a query language."""
    return " ".join(w.lower() for w in _WORD.findall(text))
