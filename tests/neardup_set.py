"""A labelled near-duplicate set built from the real article bodies of
tests/data/extraction/ground-truth.json.

Each of the 120 bodies is an *original*, published on its own site's page
template. Four syndicated *copies* of each are published by four wire
partners, each on its partner's template:

- `retitled`   the same body under an edited headline
- `edited`     2–5 % of the words replaced, dropped or inserted
- `attributed` an "originally appeared in" line on top and a credit line below
- `truncated`  the first 60 % of the paragraphs, then a "Read more" line

Hard negatives come with the corpus: different articles from the same site
(46 of the 120 share a host with another), and articles on the same topic
(`same_topic_pairs`: the original pairs with the most shingles in common).

Everything is deterministic (one seeded RNG per original), so a failing run
can be reproduced page for page.
"""

from __future__ import annotations

import html
import json
import random
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from itertools import combinations
from pathlib import Path
from urllib.parse import urlsplit

COPY_KINDS = ("retitled", "edited", "attributed", "truncated")
PARTNERS = ("wire-north", "wire-south", "wire-east", "wire-west")
_FILLER = ("reportedly", "also", "now", "still", "however", "officials", "latest", "local", "major", "new")
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class LabelledPage:
    path: str  # where the test server serves it
    feed: str  # the feed that lists it
    run: int  # 1: originals, 2: copies
    cluster: str  # ground-truth id of the original: the true story
    kind: str  # 'original' or one of COPY_KINDS
    site: str
    title: str
    paragraphs: tuple[str, ...]
    published_at: datetime

    def html(self) -> bytes:
        return _TEMPLATES[_template_of(self.site)](self).encode("utf-8")


def _template_of(site: str) -> int:
    return sum(site.encode()) % len(_TEMPLATES)


def _headline(body: str) -> str:
    return " ".join(body.split()[:10]).rstrip(".,;:") or "Untitled"


def _edit_words(paragraphs: list[str], rng: random.Random) -> list[str]:
    """Change 2–5 % of the words: replace, drop or insert, spread over the text."""
    words = [(p, i, w) for p, para in enumerate(paragraphs) for i, w in enumerate(para.split())]
    rate = rng.uniform(0.02, 0.05)
    picks = set(rng.sample(range(len(words)), max(1, round(rate * len(words)))))
    out: list[list[str]] = [[] for _ in paragraphs]
    for n, (p, _, word) in enumerate(words):
        if n not in picks:
            out[p].append(word)
            continue
        action = rng.choice(("replace", "drop", "insert"))
        if action == "replace":
            out[p].append(rng.choice(_FILLER))
        elif action == "insert":
            out[p].extend((rng.choice(_FILLER), word))
    return [" ".join(ws) for ws in out if ws]


def build(truth: dict[str, dict], seed: int = 20230911) -> list[LabelledPage]:
    base = datetime(2023, 9, 11, 6, 0, tzinfo=timezone.utc)
    pages: list[LabelledPage] = []
    for n, (key, item) in enumerate(sorted(truth.items())):
        rng = random.Random(f"{seed}:{key}")
        site = urlsplit(item["url"]).hostname or "unknown"
        paragraphs = [p.strip() for p in item["articleBody"].split("\n\n") if p.strip()]
        title = _headline(item["articleBody"])
        published = base + timedelta(hours=3 * n)
        pages.append(LabelledPage(f"/{site}/{key[:16]}.html", "origin", 1, key, "original", site, title,
                                  tuple(paragraphs), published))
        for k, kind in enumerate(COPY_KINDS):
            partner = PARTNERS[(n + k) % len(PARTNERS)]
            copy_title, body = title, list(paragraphs)
            if kind == "retitled":
                copy_title = rng.choice(("{}: what we know", "Update: {}", "{}, report says")).format(title)
            elif kind == "edited":
                body = _edit_words(body, rng)
            elif kind == "attributed":
                body = [f"This story originally appeared on {site} and is republished here with permission."] + body
                body.append(f"Reporting by {rng.choice(('A. Moreau', 'J. Okafor', 'L. Chen'))}; "
                            f"editing by {rng.choice(('P. Ruiz', 'S. Berg', 'K. Ito'))}.")
            elif kind == "truncated":
                body = body[:max(1, round(0.6 * len(body)))] + [f"Read more at {site}"]
            pages.append(LabelledPage(f"/{partner}/{kind}/{key[:16]}.html", partner, 2, key, kind, f"{partner}.example",
                                      copy_title, tuple(body), published + timedelta(hours=1 + k)))
    return pages


def feed_xml(name: str, pages: list[LabelledPage], url_of) -> str:
    items = "".join(
        f"<item><title>{html.escape(p.title)}</title><link>{html.escape(url_of(p.path))}</link>"
        f"<guid isPermaLink=\"false\">{p.feed}:{p.cluster[:16]}:{p.kind}</guid>"
        f"<pubDate>{p.published_at.strftime('%a, %d %b %Y %H:%M:%S +0000')}</pubDate></item>"
        for p in pages
    )
    return f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>{name}</title>{items}</channel></rss>'


def same_topic_pairs(truth: dict[str, dict], top: int = 50) -> list[tuple[str, str, float]]:
    """The `top` pairs of different originals with the highest exact 3-shingle Jaccard."""
    sets = {}
    for key, item in truth.items():
        words = _WORD.findall(item["articleBody"].lower())
        sets[key] = {" ".join(words[i:i + 3]) for i in range(max(1, len(words) - 2))}
    scored = [(a, b, len(sets[a] & sets[b]) / len(sets[a] | sets[b])) for a, b in combinations(sorted(sets), 2)]
    return sorted(scored, key=lambda t: -t[2])[:top]


def same_site_pairs(truth: dict[str, dict]) -> list[tuple[str, str]]:
    by_site: dict[str, list[str]] = {}
    for key, item in sorted(truth.items()):
        by_site.setdefault(urlsplit(item["url"]).hostname or "", []).append(key)
    return [pair for keys in by_site.values() for pair in combinations(keys, 2)]


def pair_scores(truth_of: dict[str, str], predicted_of: dict[str, str]) -> tuple[float, float, int, int, int]:
    """Pairwise precision and recall of a clustering: items → true cluster,
    items → predicted cluster (same item set). Returns P, R, TP, FP, FN."""
    items = sorted(truth_of)
    tp = fp = fn = 0
    for a, b in combinations(items, 2):
        same_true = truth_of[a] == truth_of[b]
        same_pred = predicted_of[a] == predicted_of[b]
        tp += same_true and same_pred
        fp += same_pred and not same_true
        fn += same_true and not same_pred
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    return precision, recall, tp, fp, fn


def load_truth(extraction_dir: Path) -> dict[str, dict]:
    return json.loads((extraction_dir / "ground-truth.json").read_text(encoding="utf-8"))


# -- page templates: different markup and boilerplate per site ---------------------------------


def _paras(page: LabelledPage, tag: str = "p") -> str:
    return "".join(f"<{tag}>{html.escape(p)}</{tag}>" for p in page.paragraphs)


def _head(page: LabelledPage) -> str:
    return (f"<head><meta charset='utf-8'><title>{html.escape(page.title)} | {page.site}</title>"
            f"<meta property='og:title' content='{html.escape(page.title, quote=True)}'>"
            f"<meta property='article:published_time' content='{page.published_at.isoformat()}'></head>")


def _nav(page: LabelledPage) -> str:
    return (f"<header><a href='/'>{page.site}</a><nav><ul><li><a href='/world'>World</a></li>"
            "<li><a href='/politics'>Politics</a></li><li><a href='/business'>Business</a></li>"
            "<li><a href='/sport'>Sport</a></li></ul></nav></header>")


def _footer(page: LabelledPage) -> str:
    return (f"<footer><p>© 2023 {page.site}. All rights reserved.</p><ul><li><a href='/about'>About us</a></li>"
            "<li><a href='/privacy'>Privacy policy</a></li><li><a href='/contact'>Contact</a></li></ul></footer>")


def _template_article(page: LabelledPage) -> str:
    return (f"<!doctype html><html lang='en'>{_head(page)}<body>{_nav(page)}<main><article>"
            f"<h1>{html.escape(page.title)}</h1><p class='byline'>By Staff Writer</p>"
            f"<time datetime='{page.published_at.isoformat()}'>{page.published_at:%B %d, %Y}</time>"
            f"{_paras(page)}</article><aside><h2>Most read</h2><ul><li><a href='/a'>Markets rally on rate hopes</a></li>"
            f"<li><a href='/b'>Storm warnings issued for the coast</a></li></ul></aside></main>{_footer(page)}</body></html>")


def _template_story_body(page: LabelledPage) -> str:
    return (f"<!doctype html><html>{_head(page)}<body><div id='page'>{_nav(page)}<div class='content'>"
            f"<div class='headline'><h1 class='story-title'>{html.escape(page.title)}</h1></div>"
            f"<div class='story-meta'>Published {page.published_at:%d %b %Y %H:%M} UTC</div>"
            f"<div class='story-body' itemprop='articleBody'>{_paras(page)}</div>"
            f"<div class='share'><a href='#'>Share on Facebook</a> <a href='#'>Share on X</a></div>"
            f"<div class='related'><h3>Related stories</h3><a href='/r1'>Council approves new budget</a></div>"
            f"</div>{_footer(page)}</div></body></html>")


def _template_section(page: LabelledPage) -> str:
    return (f"<!doctype html><html>{_head(page)}<body>{_nav(page)}<div class='wrapper'><section class='post'>"
            f"<header class='post-header'><h1>{html.escape(page.title)}</h1>"
            f"<span class='date'>{page.published_at:%Y-%m-%d}</span></header>"
            f"<div class='post-content entry-content'>{_paras(page)}</div></section>"
            f"<div class='newsletter'><p>Sign up for our morning briefing.</p><form><input name='email'></form></div>"
            f"</div>{_footer(page)}</body></html>")


_TEMPLATES = (_template_article, _template_story_body, _template_section)
