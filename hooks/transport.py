"""Sending one delivery over HTTP, safely: the destination is checked (scheme, and outside DEBUG
every address the host resolves to must be public), and the connection goes to the very address
that was checked (no second DNS look-up a rebinding could answer differently). No redirect is
followed, the answer is read up to a bound, and the whole exchange has a deadline."""

import ipaddress
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import certifi
import urllib3
from django.conf import settings

from offerhub.errors import ServiceError

TIMEOUT_SECONDS = 10.0
URL_MAX = 2048


def _refused(message: str) -> ServiceError:
    return ServiceError("VALIDATION_ERROR", message, field="url")


def _address_allowed(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone index
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not (
        ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved or ip.is_multicast or ip.is_unspecified
    )


@dataclass(frozen=True)
class Destination:
    scheme: str
    host: str
    port: int
    path: str  # path and query, as sent in the request line
    addresses: tuple[str, ...]


def destination_check(url: str, *, resolve=socket.getaddrinfo, must_resolve: bool = True) -> Destination:
    """The URL taken apart and resolved, or a 400 naming `url`. Outside DEBUG only https and only
    public addresses (every one the name resolves to: one private address is enough to refuse).
    `must_resolve=False` (registering an endpoint) accepts a name that does not resolve yet: the
    check made before each send is the one that guards, and it refuses it then."""
    if not isinstance(url, str) or not url or len(url) > URL_MAX:
        raise _refused(f"must be a URL of at most {URL_MAX} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise _refused("is not a valid URL") from None
    allowed_schemes = ("https", "http") if settings.DEBUG else ("https",)
    if parts.scheme not in allowed_schemes:
        raise _refused("must use https" + ("" if settings.DEBUG else " (http is accepted only in DEBUG)"))
    if not parts.hostname:
        raise _refused("must name a host")
    if parts.username is not None or parts.password is not None:
        raise _refused("must not carry credentials")
    if parts.fragment:
        raise _refused("must not have a #fragment")
    if any(ord(char) < 0x21 or ord(char) > 0x7E for char in url):
        raise _refused("must be printable ASCII (percent-encode anything else)")
    port = port or (443 if parts.scheme == "https" else 80)
    try:
        infos = resolve(parts.hostname, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        infos = []
    addresses = tuple(dict.fromkeys(info[4][0] for info in infos))
    if not addresses and must_resolve:
        raise _refused(f"host {parts.hostname} does not resolve")
    if not settings.DEBUG:
        blocked = [address for address in addresses if not _address_allowed(address)]
        if blocked:
            raise _refused(f"resolves to a private, loopback or reserved address ({blocked[0]}), refused")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Destination(parts.scheme, parts.hostname, port, path, addresses)


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    location: str


def http_post(
    destination: Destination, *, body: bytes, headers: dict, max_body: int, ca_certs: str | None = None
) -> Answer:
    """POST to the first checked address, the Host header and TLS name being the URL's host (the
    certificate is verified for that name, against certifi's authorities unless `ca_certs`).
    Raises urllib3's errors (or TimeoutError past the deadline) on transport failure."""
    deadline = time.monotonic() + TIMEOUT_SECONDS
    default_port = 443 if destination.scheme == "https" else 80
    host_header = destination.host if destination.port == default_port else f"{destination.host}:{destination.port}"
    if ":" in destination.host:  # an IPv6 literal
        host_header = f"[{destination.host}]" + ("" if destination.port == default_port else f":{destination.port}")
    options = {"timeout": urllib3.Timeout(total=TIMEOUT_SECONDS), "retries": False, "maxsize": 1}
    if destination.scheme == "https":
        pool = urllib3.HTTPSConnectionPool(
            destination.addresses[0],
            destination.port,
            server_hostname=destination.host,
            assert_hostname=destination.host,
            cert_reqs="CERT_REQUIRED",
            ca_certs=ca_certs or certifi.where(),
            **options,
        )
    else:
        pool = urllib3.HTTPConnectionPool(destination.addresses[0], destination.port, **options)
    try:
        response = pool.urlopen(
            "POST",
            destination.path,
            body=body,
            headers={**headers, "Host": host_header},
            redirect=False,
            retries=False,
            preload_content=False,
            assert_same_host=False,
        )
        try:
            received = b""
            while len(received) <= max_body:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no complete answer within {TIMEOUT_SECONDS:.0f} s")
                chunk = response.read(1024, decode_content=False)
                if not chunk:
                    break
                received += chunk
            return Answer(response.status, received[:max_body], response.headers.get("Location", ""))
        finally:
            response.close()  # not drained: an endless answer is cut here
    finally:
        pool.close()
