"""Settings refuse what cannot work: control characters in header values and
feed URLs, feed names that differ only in Unicode normalization."""

import unicodedata

import pytest

from flows.settings import SettingsError, load_settings


def _sources(tmp_path, text: str):
    path = tmp_path / "s.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("agent", ["bot/1.0\\r\\nX-Injected: 1", "bot/1.0\\n", "bot\\u0000/1.0", "bot\\u007f/1.0",
                                   "bøt/1.0"])
def test_user_agent_must_be_a_valid_header_value(tmp_path, agent):
    path = _sources(tmp_path, f'[fetch]\nuser_agent = "{agent}"\n\n[[feeds]]\nname = "x"\nurl = "https://x.example/f"\n')
    with pytest.raises(SettingsError) as info:
        load_settings(path)
    assert "fetch.user_agent" in str(info.value)


@pytest.mark.parametrize("url", ["https://x.example/f\\r\\nHost: evil", "https://x.example/\\u0000", "https://x.example/\\t",
                                 "https://x.example/\\u0085"])
def test_feed_urls_with_control_characters_are_refused(tmp_path, url):
    path = _sources(tmp_path, f'[[feeds]]\nname = "x"\nurl = "{url}"\n')
    with pytest.raises(SettingsError) as info:
        load_settings(path)
    assert "feeds[0].url" in str(info.value) and "control character" in str(info.value)


def test_feed_names_are_compared_after_nfc(tmp_path):
    composed, decomposed = unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")
    assert composed != decomposed
    path = _sources(tmp_path, f'[[feeds]]\nname = "{composed}"\nurl = "https://a.example/f"\n\n'
                              f'[[feeds]]\nname = "{decomposed}"\nurl = "https://b.example/f"\n')
    with pytest.raises(SettingsError) as info:
        load_settings(path)
    assert "feed names must be unique" in str(info.value)
    single = _sources(tmp_path, f'[[feeds]]\nname = "{decomposed}"\nurl = "https://a.example/f"\n')
    assert load_settings(single).feeds[0].name == composed


def test_a_plain_settings_file_still_loads(tmp_path):
    path = _sources(tmp_path, '[fetch]\nuser_agent = "bot/1.0 (+https://x.example/bot)"\n\n'
                              '[[feeds]]\nname = "x"\nurl = "https://x.example/f?a=1&b=%20"\n')
    assert load_settings(path).fetch.user_agent.startswith("bot/1.0")


def test_titles_are_capped():
    from transforms.feeds import parse_feed
    from transforms.normalize import MAX_TITLE_CHARS

    huge = "&amp;" * 50_000
    feed = (f'<?xml version="1.0"?><rss version="2.0"><channel><title>{huge}</title>'
            f'<item><title>{huge}</title><link>https://x.example/a</link></item></channel></rss>').encode()
    parsed = parse_feed(feed, source="x", url="https://x.example/feed")
    assert len(parsed.title) <= MAX_TITLE_CHARS and parsed.title.endswith("…")
    assert len(parsed.entries[0].title) <= MAX_TITLE_CHARS
