"""The charset chain shared by pages and feeds (transforms.charsets), on plain bytes."""

import codecs

import pytest

from transforms.charsets import decode_feed, detect_encoding, header_charset, utf8_document

DOC = '<rss version="2.0"><channel><title>Café – “déjà vu”</title></channel></rss>'


@pytest.mark.parametrize("value, expected", [
    ("text/xml; charset=UTF-8", "UTF-8"),
    ('text/xml;charset= "us-ascii"', "us-ascii"),
    ("application/atom+xml;charset='gb2312', application/xml", "gb2312"),  # a header sent twice
    ("application/rss+xml", None),
    (None, None),
])
def test_header_charset(value, expected):
    assert header_charset(value) == expected


@pytest.mark.parametrize("bom, codec", [
    (codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"),
    (codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"),
])
def test_a_bom_wins_over_any_declaration(bom, codec):
    decoded = decode_feed(bom + DOC.encode(codec), "application/xml; charset=koi8-r")
    assert (decoded.text, decoded.encoding, decoded.warning) == (DOC, codec, None)


def test_utf16_without_bom_is_sniffed_from_its_xml_declaration():
    doc = '<?xml version="1.0" encoding="utf-16"?>' + DOC
    decoded = decode_feed(doc.encode("utf-16-be"))
    assert (decoded.text, decoded.encoding, decoded.warning) == (doc, "utf-16-be", None)


def test_header_then_declaration_then_utf8():
    latin = ('<?xml version="1.0" encoding="iso-8859-1"?>' + DOC.replace("–", "-").replace("“", '"')
             .replace("”", '"')).encode("latin-1")
    # latin-1 is read as windows-1252, its superset on the web.
    assert decode_feed(latin).encoding == "cp1252" and "Café" in decode_feed(latin).text
    assert decode_feed(latin, "text/xml; charset=windows-1252").warning is None
    assert decode_feed(DOC.encode("utf-8")) == decode_feed(DOC.encode("utf-8"), "application/rss+xml")
    assert decode_feed(DOC.encode("utf-8")).warning is None


def test_disagreements_are_warned():
    assert decode_feed(b'<?xml version="1.0" encoding="bogus"?><rss/>').warning == "declared encoding 'bogus' is unknown"
    # UTF-8 bytes under a legacy declaration: read as what they are.
    decoded = decode_feed(('<?xml version="1.0" encoding="iso-8859-1"?>' + DOC).encode("utf-8"))
    assert decoded.encoding == "utf-8" and "Café – “déjà vu”" in decoded.text
    assert decoded.warning == "declared iso-8859-1 but the bytes are UTF-8: read as UTF-8"
    # A UTF-16 label on bytes that are not UTF-16.
    decoded = decode_feed(b'<?xml version="1.0" encoding="utf-16"?><rss/>')
    assert decoded.encoding == "utf-8" and "does not start like utf-16" in decoded.warning


def test_detection_uses_the_declared_language_to_break_ties():
    text = "東京都内に新しい美術館が開館し、初日には多くの来館者が訪れました。"
    raw = f"<rss><channel><title>{text}</title></channel></rss>".encode("euc-jp")
    assert codecs.lookup(detect_encoding(raw, "ja")).name in ("euc_jp", "euc_jis_2004", "euc_jisx0213")
    assert decode_feed(raw, language="ja").text.endswith(f"{text}</title></channel></rss>")


def test_utf8_document_says_utf8():
    assert utf8_document('<?xml version="1.0" encoding="koi8-r"?><rss/>') == b"<?xml version='1.0' encoding='utf-8'?><rss/>"
    assert utf8_document("<rss/>").startswith(b"<?xml version='1.0' encoding='utf-8'?>\n<rss/>")
    assert utf8_document('{"version": "https://jsonfeed.org/version/1"}') == b'{"version": "https://jsonfeed.org/version/1"}'
