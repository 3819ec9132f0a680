"""OPML in and out: the feed lists that every feed reader imports and exports.

`read_opml` turns an OPML document into outlines, `plan_import` decides which
of them become new feeds of the registry (names made unique, duplicates and
unusable outlines reported, never fatal), `write_opml` writes the feeds back.
Pure: bytes in, values out; the CLI reads the file, the warehouse stores.

OPML 2.0 (http://opml.org/spec2.opml): a feed is an `<outline>` with an
`xmlUrl`; outlines without one that hold others are folders, and their
titles become the feeds' tags, as does each part of a `category` attribute
("/News/World,Tech" gives News, World and Tech).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import format_datetime
from typing import Iterable, Sequence
from urllib.parse import urlsplit

from lxml import etree

from transforms.errors import ParseError
from transforms.records import RegistryFeed

# OPML of 100,000 feeds is ~20 MB; the cap keeps a wrong file from being read whole.
MAX_OPML_BYTES = 64 * 1024 * 1024
_NAME_MAX = 60


@dataclass(frozen=True, slots=True)
class Outline:
    """One feed outline as the file has it."""

    line: int
    url: str
    title: str | None
    html_url: str | None
    language: str | None
    tags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Problem:
    line: int | None
    message: str


@dataclass(frozen=True, slots=True)
class OpmlDocument:
    title: str | None
    outlines: tuple[Outline, ...]
    problems: tuple[Problem, ...]
    folders: int = 0


@dataclass(frozen=True, slots=True)
class ImportPlan:
    new: tuple[RegistryFeed, ...]
    known: tuple[tuple[Outline, str], ...]  # already registered, under this name
    problems: tuple[Problem, ...] = field(default=())


def _attr(element, name: str) -> str | None:
    # Exporters disagree on case (xmlUrl, xmlurl, XMLURL).
    value = element.get(name)
    if value is None:
        lowered = name.lower()
        value = next((v for k, v in element.attrib.items() if isinstance(k, str) and k.lower() == lowered), None)
    value = value.strip() if value else None
    return value or None


def _categories(value: str | None) -> list[str]:
    return [part.strip() for path in (value or "").split(",") for part in path.split("/") if part.strip()]


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def read_opml(data: bytes, *, url: str = "OPML") -> OpmlDocument:
    """The feed outlines of an OPML document, each with the titles of the
    folders it sits in as tags. Not XML, or not OPML: ParseError. An outline
    that is not usable is a Problem, and the rest are still read."""
    if len(data) > MAX_OPML_BYTES:
        raise ParseError(url, "too_large", f"larger than {MAX_OPML_BYTES // (1024 * 1024)} MB")
    # No entities, no DTD, no network: an OPML file comes from anywhere.
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                             remove_comments=True, remove_pis=True)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise ParseError(url, "malformed_xml", f"not well-formed XML: {exc}") from None
    if not isinstance(root.tag, str) or etree.QName(root).localname.lower() != "opml":
        raise ParseError(url, "not_opml", f"the root element is <{etree.QName(root).localname}>, not <opml>")
    head_title = root.findtext("head/title")
    body = root.find("body")
    if body is None:
        raise ParseError(url, "not_opml", "no <body>")
    outlines: list[Outline] = []
    problems: list[Problem] = []
    folders = 0

    def walk(parent, path: tuple[str, ...]) -> None:
        nonlocal folders
        for element in parent:
            if not isinstance(element.tag, str) or element.tag.lower() != "outline":
                continue
            title = _attr(element, "title") or _attr(element, "text")
            feed_url = _attr(element, "xmlUrl")
            tags = _unique([*path, *_categories(_attr(element, "category"))])
            if feed_url:
                outlines.append(Outline(element.sourceline, feed_url, title, _attr(element, "htmlUrl"),
                                        _attr(element, "language"), tags))
                walk(element, path + ((title,) if title else ()))  # rare, but some nest feeds in feeds
            elif len(element):
                folders += 1
                walk(element, path + ((title,) if title else ()))
            else:
                problems.append(Problem(element.sourceline,
                                        f"outline {title!r} has no xmlUrl: not a feed, skipped"))

    walk(body, ())
    return OpmlDocument(head_title.strip() if head_title and head_title.strip() else None, tuple(outlines),
                        tuple(problems), folders)


def feed_name(title: str | None, url: str) -> str:
    """A registry name from a title (else the URL's host and path): letters,
    digits, '.', '_' and '-', as a sources file's names are."""
    parts = urlsplit(url)
    base = title or f"{parts.hostname or ''}{parts.path}"
    text = unicodedata.normalize("NFKC", base).lower()
    slug = re.sub(r"[^\w.]+", "-", text).strip("-._")
    return slug[:_NAME_MAX].strip("-._") or "feed"


def _url_problem(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        # file: from a list made elsewhere would read this machine's files.
        return f"{url!r}: only http and https feeds are imported"
    if not parts.hostname:
        return f"{url!r} has no host"
    if any(ord(c) < 32 or ord(c) == 127 for c in url):
        return f"{url!r} contains a control character"
    return None


def plan_import(outlines: Sequence[Outline], *, known_urls: dict[str, str], known_names: Iterable[str],
                extra_tags: Sequence[str] = ()) -> ImportPlan:
    """Which outlines become new feeds. A URL already in the registry (or
    earlier in the file) is reported and skipped; a name already taken gets
    a suffix (-2, -3, ...)."""
    taken = set(known_names)
    seen: dict[str, tuple[int, str]] = {}
    new: list[RegistryFeed] = []
    known: list[tuple[Outline, str]] = []
    problems: list[Problem] = []
    for outline in outlines:
        problem = _url_problem(outline.url)
        if problem:
            problems.append(Problem(outline.line, problem))
            continue
        if outline.url in known_urls:
            known.append((outline, known_urls[outline.url]))
            continue
        if outline.url in seen:
            line, name = seen[outline.url]
            problems.append(Problem(outline.line, f"{outline.url} is listed again (first at line {line}, "
                                                  f"as {name!r}): skipped"))
            continue
        base = feed_name(outline.title, outline.url)
        name, n = base, 1
        while name in taken:
            n += 1
            name = f"{base[:_NAME_MAX - len(str(n)) - 1]}-{n}"
        taken.add(name)
        seen[outline.url] = (outline.line, name)
        new.append(RegistryFeed(name=name, url=outline.url, title=outline.title, html_url=outline.html_url,
                                language=outline.language, tags=_unique([*outline.tags, *extra_tags])))
    return ImportPlan(tuple(new), tuple(known), tuple(problems))


def write_opml(feeds: Sequence[RegistryFeed], *, title: str, now: datetime) -> bytes:
    """OPML 2.0 of the feeds, in folders by their first tag (what readers
    show as folders); every tag in `category`, so an import reads them all
    back."""
    root = etree.Element("opml", version="2.0")
    head = etree.SubElement(root, "head")
    etree.SubElement(head, "title").text = title
    etree.SubElement(head, "dateCreated").text = format_datetime(now)
    etree.SubElement(head, "docs").text = "http://opml.org/spec2.opml"
    body = etree.SubElement(root, "body")
    folders: dict[str, etree._Element] = {}
    for feed in sorted(feeds, key=lambda f: (f.tags[:1], f.name)):
        parent = body
        if feed.tags:
            parent = folders.get(feed.tags[0])
            if parent is None:
                parent = folders[feed.tags[0]] = etree.SubElement(body, "outline", text=feed.tags[0],
                                                                  title=feed.tags[0])
        attrs = {"type": "rss", "text": feed.title or feed.name, "title": feed.title or feed.name,
                 "xmlUrl": feed.url}
        if feed.html_url:
            attrs["htmlUrl"] = feed.html_url
        if feed.language:
            attrs["language"] = feed.language
        if len(feed.tags) > 1:
            attrs["category"] = ",".join(t.replace(",", " ").replace("/", " ") for t in feed.tags[1:])
        etree.SubElement(parent, "outline", attrs)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
