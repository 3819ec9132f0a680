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

import gzip
import io
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import format_datetime
from typing import Iterable, Sequence, cast
from urllib.parse import urlsplit, urlunsplit

from lxml import etree

from transforms.errors import ParseError
from transforms.records import RegistryFeed


class OpmlError(ParseError):
    """The OPML file the user gave cannot be read: their input (exit 2)."""

    exit_code = 2


# OPML of 100,000 feeds is ~20 MB; the cap keeps a wrong file from being read whole.
MAX_OPML_BYTES = 64 * 1024 * 1024
_NAME_MAX = 60
MAX_URL_CHARS = 2048


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
    tags_of_known: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (name, tags this file gives it)


def _attr(element: etree._Element, name: str) -> str | None:
    # Exporters disagree on case (xmlUrl, xmlurl, XMLURL).
    value = element.get(name)
    if value is None:
        lowered = name.lower()
        value = next((v for k, v in element.attrib.items()
                      if isinstance(k, str) and isinstance(v, str) and k.lower() == lowered), None)
    value = value.strip() if value else None
    return value or None


def _child(element: etree._Element, name: str) -> etree._Element | None:
    """The first child of that name, in any letter case and any namespace."""
    return next((c for c in element if isinstance(c.tag, str) and etree.QName(c).localname.lower() == name), None)


def _categories(value: str | None) -> list[str]:
    return [part.strip() for path in (value or "").split(",") for part in path.split("/") if part.strip()]


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def read_opml(data: bytes, *, url: str = "OPML") -> OpmlDocument:
    """The feed outlines of an OPML document, each with the titles of the
    folders it sits in as tags. Not XML, or not OPML: OpmlError. An outline
    that is not usable is a Problem, and the rest are still read."""
    if data[:2] == b"\x1f\x8b":  # a gzipped export (.opml.gz): read it, within the same cap
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as z:
                data = z.read(MAX_OPML_BYTES + 1)
        except (OSError, EOFError) as exc:
            raise OpmlError(url, "malformed_gzip", f"a gzip file that cannot be read: {exc}") from None
    if len(data) > MAX_OPML_BYTES:
        raise OpmlError(url, "too_large", f"larger than {MAX_OPML_BYTES // (1024 * 1024)} MB")
    data = data.lstrip(b" \t\r\n")  # some exporters put a blank line before <?xml
    # No entities, no DTD, no network: an OPML file comes from anywhere.
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                             remove_comments=True, remove_pis=True)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        # libxml2's limits (depth, attribute size) name an option the user cannot set: say what it means.
        message = " ".join(str(exc).split())
        if "XML_PARSE_HUGE" in message or "Resource limit" in message:
            message = f"too deeply nested or too large a value for an OPML file ({message.split(',')[0]})"
        raise OpmlError(url, "malformed_xml", f"not well-formed XML: {message}") from None
    if not isinstance(root.tag, str) or etree.QName(root).localname.lower() != "opml":
        raise OpmlError(url, "not_opml", f"the root element is <{etree.QName(root).localname}>, not <opml>")
    head = _child(root, "head")
    title_element = None if head is None else _child(head, "title")
    head_title = None if title_element is None else title_element.text
    body = _child(root, "body")
    if body is None:
        raise OpmlError(url, "not_opml", "no <body>")
    outlines: list[Outline] = []
    problems: list[Problem] = []
    folders = 0

    def walk(parent: etree._Element, path: tuple[str, ...]) -> None:
        nonlocal folders
        for element in parent:
            if not isinstance(element.tag, str) or etree.QName(element).localname.lower() != "outline":
                continue
            title = _attr(element, "title") or _attr(element, "text")
            feed_url = _attr(element, "xmlUrl")
            # lxml-stubs declare `sourceline = ...`; lxml gives the line a parsed element starts on.
            line = cast(int, element.sourceline)
            tags = _unique([*path, *_categories(_attr(element, "category"))])
            if feed_url:
                outlines.append(Outline(line, feed_url, title, _attr(element, "htmlUrl"),
                                        _attr(element, "language"), tags))
                walk(element, path + ((title,) if title else ()))  # rare, but some nest feeds in feeds
            elif len(element):
                folders += 1
                walk(element, path + ((title,) if title else ()))
            else:
                problems.append(Problem(line,
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


def feed_key(url: str) -> str:
    """What makes two feed URLs one feed: http and https, the host's letter
    case and IDNA form, a default port, a fragment and a trailing slash do
    not. The query stays (it often selects the feed)."""
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").rstrip(".")
    try:
        host = host.encode("idna").decode("ascii")
    except UnicodeError:
        pass
    port = parts.port if parts.port not in (None, 80, 443) else None
    path = parts.path.rstrip("/") or "/"
    return f"{host.lower()}{':' + str(port) if port else ''}{path}{'?' + parts.query if parts.query else ''}"


def _url_problem(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        # file: from a list made elsewhere would read this machine's files.
        return f"{url!r}: only http and https feeds are imported"
    if not parts.hostname:
        return f"{url!r} has no host"
    if parts.username is not None or parts.password is not None:
        return f"{parts.scheme}://{parts.hostname}/...: carries a user name or password, which would be stored and shown"
    if len(url) > MAX_URL_CHARS:
        return f"{url[:60]!r}...: longer than {MAX_URL_CHARS} characters"
    if any(ord(c) < 32 or ord(c) == 127 for c in url):
        return f"{url!r} contains a control character"
    return None


def plan_import(outlines: Sequence[Outline], *, known_urls: dict[str, str], known_names: Iterable[str],
                extra_tags: Sequence[str] = ()) -> ImportPlan:
    """Which outlines become new feeds. A feed already in the registry (or
    earlier in the file), by `feed_key`, is not added again: a registered
    one is `known` (its tags from this file are in `tags_of_known`), a
    repeat within the file a problem. A name already taken gets a suffix
    (-2, -3, ...)."""
    extra = [t.strip() for t in extra_tags if t.strip()]
    registered = {feed_key(u): name for u, name in known_urls.items()}
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
        key = feed_key(outline.url)
        if key in registered:
            known.append((outline, registered[key]))
            continue
        if key in seen:
            line, name = seen[key]
            problems.append(Problem(outline.line, f"{outline.url} is listed again (first at line {line}, "
                                                  f"as {name!r}): skipped"))
            continue
        base = feed_name(outline.title, outline.url)
        name, n = base, 1
        while name in taken:
            n += 1
            name = f"{base[:_NAME_MAX - len(str(n)) - 1]}-{n}"
        taken.add(name)
        seen[key] = (outline.line, name)
        url = urlunsplit(urlsplit(outline.url)._replace(fragment=""))  # never sent to the server anyway
        new.append(RegistryFeed(name=name, url=url, title=outline.title, html_url=outline.html_url,
                                language=outline.language, tags=_unique([*outline.tags, *extra])))
    tags: dict[str, tuple[str, ...]] = {}
    for outline, name in known:
        tags[name] = _unique([*tags.get(name, ()), *outline.tags, *extra])
    return ImportPlan(tuple(new), tuple(known), tuple(problems), tuple(tags.items()))


def merged_tags(current: dict[str, tuple[str, ...]],
                additions: Sequence[tuple[str, tuple[str, ...]]]) -> dict[str, tuple[str, ...]]:
    """The feeds whose tags an import adds to (those of `current`), with
    their new tags: the old ones first, in their order."""
    out = {}
    for name, tags in additions:
        if name in current:
            merged = _unique([*current[name], *tags])
            if merged != current[name]:
                out[name] = merged
    return out


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
            folder = folders.get(feed.tags[0])
            if folder is None:
                folder = folders[feed.tags[0]] = etree.SubElement(body, "outline", text=feed.tags[0],
                                                                  title=feed.tags[0])
            parent = folder
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
