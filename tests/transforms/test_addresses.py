"""The guard's decision table and URL checks, as plain values."""

import ipaddress

import pytest

from transforms.addresses import blocked_reason, embedded_ipv4, url_problem

BLOCKED = [
    "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
    "255.255.255.255", "224.0.0.1", "198.18.0.1", "192.0.2.1",
    "::1", "::", "fe80::1", "fc00::1", "fd12::1", "ff02::1", "fec0::1", "2001:db8::1", "64:ff9b:1::1",
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::127.0.0.1", "::8.8.8.8",
    "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe",  # NAT64 to loopback, to the metadata address
    "2002:7f00:1::1", "2002:a00:1::",  # 6to4 of 127.0.0.1, of 10.0.0.1
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client 127.0.0.1
    "2001:0:a00:1:8000:63bf:f7f7:f7f7",  # Teredo, server 10.0.0.1
]
PUBLIC = ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "2a00:1450:4001:81c::200e",
          "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1", "2001:0:808:808:8000:63bf:f7f7:f7f7"]


@pytest.mark.parametrize("address", BLOCKED)
def test_blocked(address):
    assert blocked_reason(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", PUBLIC)
def test_public(address):
    assert blocked_reason(ipaddress.ip_address(address)) is None


def test_embedded_addresses():
    assert embedded_ipv4(ipaddress.ip_address("2002:7f00:1::1")) == (ipaddress.ip_address("127.0.0.1"),)
    assert embedded_ipv4(ipaddress.ip_address("2001:0:4136:e378:8000:63bf:80ff:fffe")) == (
        ipaddress.ip_address("65.54.227.120"), ipaddress.ip_address("127.0.0.1"))
    assert embedded_ipv4(ipaddress.ip_address("2606:4700::1")) == ()


def test_allowed_networks_open_the_table():
    loopback = (ipaddress.ip_network("127.0.0.0/8"),)
    assert blocked_reason(ipaddress.ip_address("127.0.0.1"), loopback) is None
    assert blocked_reason(ipaddress.ip_address("::ffff:127.0.0.1"), loopback) is None
    assert blocked_reason(ipaddress.ip_address("10.0.0.1"), loopback) == "private"
    assert "127.0.0.1" in blocked_reason(ipaddress.ip_address("64:ff9b::7f00:1"))


@pytest.mark.parametrize("url", ["http://0177.0.0.1/", "http://2130706433/", "http://0x7f000001/", "http://127.1/",
                                 "http://[::1", "http://x.example/a\r\nb", "http://x.example/\x00", "http:///path",
                                 "http://x.example:99999/", "http://a b.example/"])
def test_url_problems(url):
    assert url_problem(url) is not None


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/a", "https://example.com/a?b=c", "http://[::1]:80/",
                                 "http://123.example/", "https://xn--caf-dma.example/",
                                 "https://x.example/a page.html"])
def test_urls_fine(url):
    assert url_problem(url) is None
