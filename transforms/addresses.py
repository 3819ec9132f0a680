"""Which addresses and URLs the fetcher may connect to: pure decisions.

`blocked_reason` decides on one IP address by an explicit table of networks,
not by Python's `is_global` (which calls `::127.0.0.1` and `64:ff9b::7f00:1`
global). IPv6 forms that carry an IPv4 address inside (IPv4-mapped,
IPv4-compatible, NAT64, 6to4, Teredo) are decided on the IPv4 address they
lead to as well. `url_problem` refuses URLs that parsers disagree on (a host
of `0177.0.0.1` is 127.0.0.1 to a browser and an error to httpx). No
resolving and no connecting here: the fetcher does that, with these answers.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_net = ipaddress.ip_network

# Never connected to (unless the settings' allow_private_networks covers the
# address). From the IANA special-purpose registries; every IPv4 address not
# listed is public unicast.
BLOCKED_IPV4: tuple[tuple[Network, str], ...] = (
    (_net("0.0.0.0/8"), "this network"),
    (_net("10.0.0.0/8"), "private"),
    (_net("100.64.0.0/10"), "shared address space (carrier-grade NAT)"),
    (_net("127.0.0.0/8"), "loopback"),
    (_net("169.254.0.0/16"), "link-local (cloud metadata)"),
    (_net("172.16.0.0/12"), "private"),
    (_net("192.0.0.0/24"), "IETF protocol assignments"),
    (_net("192.0.2.0/24"), "documentation"),
    (_net("192.31.196.0/24"), "AS112"),
    (_net("192.52.193.0/24"), "AMT"),
    (_net("192.88.99.0/24"), "6to4 relay anycast"),
    (_net("192.168.0.0/16"), "private"),
    (_net("192.175.48.0/24"), "AS112"),
    (_net("198.18.0.0/15"), "benchmarking"),
    (_net("198.51.100.0/24"), "documentation"),
    (_net("203.0.113.0/24"), "documentation"),
    (_net("224.0.0.0/4"), "multicast"),
    (_net("240.0.0.0/4"), "reserved (and broadcast)"),
)

# IPv6: only global unicast (2000::/3) is public, minus these.
IPV6_PUBLIC = _net("2000::/3")
BLOCKED_IPV6: tuple[tuple[Network, str], ...] = (
    (_net("2001::/23"), "IETF protocol assignments"),  # Teredo (2001::/32) is decided by what it embeds
    (_net("2001:db8::/32"), "documentation"),
    (_net("2002::/16"), "6to4"),  # decided by what it embeds
    (_net("3fff::/20"), "documentation"),
)

# IPv6 ranges whose address carries an IPv4 address.
MAPPED = _net("::ffff:0:0/96")  # IPv4-mapped: the socket connects to the IPv4 address
COMPATIBLE = _net("::/96")  # IPv4-compatible, deprecated; ::a.b.c.d
NAT64 = _net("64:ff9b::/96")  # well-known NAT64 prefix: a gateway connects to the IPv4 address
NAT64_LOCAL = _net("64:ff9b:1::/48")  # local-use NAT64: its IPv4 mapping is the operator's
SIX_TO_FOUR = _net("2002::/16")  # 2002:AABB:CCDD::/48 tunnels to AA.BB.CC.DD
TEREDO = _net("2001::/32")  # server IPv4 in bits 32-63, client IPv4 inverted in the last 32


def embedded_ipv4(address: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, ...]:
    """The IPv4 addresses an IPv6 address leads to, by its form; () for none."""
    value = int(address)
    if address in MAPPED or address in NAT64:
        return (ipaddress.IPv4Address(value & 0xFFFFFFFF),)
    if address in COMPATIBLE and value > 1:  # :: and ::1 are not IPv4-compatible
        return (ipaddress.IPv4Address(value & 0xFFFFFFFF),)
    if address in SIX_TO_FOUR:
        return (ipaddress.IPv4Address((value >> 80) & 0xFFFFFFFF),)
    if address in TEREDO:
        server = ipaddress.IPv4Address((value >> 64) & 0xFFFFFFFF)
        client = ipaddress.IPv4Address(~value & 0xFFFFFFFF)
        return (server, client)
    return ()


def _table_reason(address: IPAddress) -> str | None:
    if address.version == 4:
        for net, why in BLOCKED_IPV4:
            if address in net:
                return why
        return None
    if address in NAT64_LOCAL:
        return "local-use NAT64"
    if address in COMPATIBLE:
        return "unspecified" if int(address) == 0 else "loopback" if int(address) == 1 else "IPv4-compatible (deprecated)"
    if address in MAPPED or address in NAT64:
        return None  # decided by the IPv4 address inside
    if address not in IPV6_PUBLIC:
        return "not global unicast (loopback, link-local, unique local, multicast or reserved)"
    if address in TEREDO or address in SIX_TO_FOUR:
        return None  # decided by the IPv4 addresses inside
    for net, why in BLOCKED_IPV6:
        if address in net:
            return why
    return None


def blocked_reason(address: IPAddress, allowed: tuple[Network, ...] = ()) -> str | None:
    """Why the fetcher must not connect to `address`, or None when it may.
    A network in `allowed` (the settings' allow_private_networks) lets its
    addresses through, whether named directly or embedded in an IPv6 form."""
    candidates: tuple[IPAddress, ...] = (address,)
    if address.version == 6:
        candidates += embedded_ipv4(address)
    for candidate in candidates:
        why = _table_reason(candidate)
        if why is None or any(candidate.version == net.version and candidate in net for net in allowed):
            continue
        if candidate is address:
            return why
        return f"embeds {candidate} ({why})"
    return None


# A host made of numbers, dots and hex: an IPv4 address to some parser.
_NUMERIC_HOST = re.compile(r"^(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+))*\.?$", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def url_problem(url: str) -> str | None:
    """Why an http(s) URL cannot be fetched safely as written, or None.
    Refused: control characters, no host (or one with a space), a bad port, and numeric
    hosts other than plain dotted-quad IPv4 (octal `0177.0.0.1`, hex
    `0x7f.1`, a bare integer), which parsers read differently."""
    # A space in a path is common in sloppy feeds and httpx quotes it; a
    # control character is never meant.
    found = _CONTROL.search(url)
    if found:
        return f"control character {found.group()!r} in the URL"
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        return f"unparsable URL ({exc})"
    if not host:
        return "no host"
    if " " in host:
        return f"space in the host {host!r}"
    if ":" not in host and _NUMERIC_HOST.match(host):
        try:
            ipaddress.IPv4Address(host.rstrip("."))
        except ValueError:
            return f"ambiguous numeric host {host!r} (not a dotted-quad IPv4 address)"
    return None
