"""Catalogue pages (the home page, browsing and search) served from a per-process cache.

What such a page shows is the same for every visitor of a URL until the catalogue changes, and
rendering it (its queries, the template) costs ten times the rest of the request. So a page is
rendered once per process and URL for each version of the catalogue (the row that database
triggers change with every write to listings, images, categories, reviews or a seller's name,
handle or standing: marketplace/migrations/0013_catalog_version.py), and served again while
that version holds: one prepared read of the version per request (for a visitor with a session,
part of the session's read), where the page cost its queries and a template render.

What differs between visitors is kept out of the cached page and filled in per request:
- the parts that show the visitor (the navigation bar's account links, the home page's
  greeting): `{% viewer_part "template" %}` in a template renders them with the request's user,
  and once per (template, visitor, page) they are cached apart;
- the CSRF token: the page holds a per-process placeholder, replaced by the request's token.
Anything else on a cached page must not depend on the visitor: while the shared part renders,
`user` and `perms` are a guard that fails the render if a template reads them. A request with
messages to show (they are the visitor's) is rendered as usual, without the cache.
"""

import os
import secrets
from collections.abc import Callable

from django.contrib.messages import get_messages
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import CSRF_ALLOWED_CHARS, get_token
from django.shortcuts import render
from django.template import loader
from django.utils.safestring import SafeString
from django.utils.translation import get_language

from marketplace.sessions import CATALOG_VERSION_SQL
from offerhub.database import prepared_cursor
from offerhub.lru import LruCache

# Per process, unguessable: no listing title or search can contain them.
_NONCE = secrets.token_hex(16)
CSRF_PLACEHOLDER = f"csrf-{_NONCE}"
VIEWER_MARKER = SafeString(f"<!--viewer-{_NONCE}-->")
# Context key under which a shared render collects its viewer parts' template names.
VIEWER_PARTS = "catalog_page_viewer_parts"

_pages = LruCache(max_entries=256)  # (template, URL, language, version) -> (chunks, viewer parts)
_viewer_parts = LruCache(max_entries=2_000)  # (part, visitor, view, language) -> HTML


class ViewerNotShared(Exception):
    """A cached catalogue page's shared part read the visitor (see the module's docstring)."""


class _ViewerGuard:
    """`user` and `perms` while a shared part renders: reading them in any way fails the render."""

    def _refuse(self, what: str):
        raise ViewerNotShared(f"a catalogue page read the visitor ({what}) outside a {{% viewer_part %}}")

    def __getattr__(self, name):
        self._refuse(name)

    def __getitem__(self, name):
        self._refuse(name)

    def __bool__(self):
        self._refuse("in a condition")

    def __str__(self):
        self._refuse("as text")

    def __iter__(self):
        self._refuse("in a loop")


_GUARD = _ViewerGuard()


def catalog_version(request: HttpRequest) -> int | None:
    """The catalogue's current version; None when its row is missing (nothing is cached then).
    A session read from the database in this request brought it (marketplace.sessions)."""
    session = getattr(request, "session", None)
    if getattr(session, "read_with_session", False):
        return session.catalog_version
    with prepared_cursor() as cursor:
        cursor.execute(CATALOG_VERSION_SQL)
        row = cursor.fetchone()
    return row[0] if row else None


def catalog_page(request: HttpRequest, template_name: str, context: Callable[[], dict]) -> HttpResponse:
    """The page `template_name` renders with `context()` (called only when the page is not cached)."""
    if request.method not in ("GET", "HEAD") or len(get_messages(request)):
        return render(request, template_name, context())
    version = catalog_version(request)  # after the messages: the session they loaded brought it
    if version is None:
        return render(request, template_name, context())
    key = (template_name, request.get_full_path(), get_language(), version)
    page = _pages.get(key)
    if page is None:
        parts: list[str] = []
        shared = {"csrf_token": CSRF_PLACEHOLDER, "user": _GUARD, "perms": _GUARD, VIEWER_PARTS: parts}
        html = loader.render_to_string(template_name, {**context(), **shared}, request)
        page = (tuple(html.split(VIEWER_MARKER)), tuple(parts))
        _pages.put(key, page)
    chunks, parts = page
    pieces = [chunks[0]]
    for part, chunk in zip(parts, chunks[1:], strict=True):
        pieces += [_viewer_part_html(request, part), chunk]
    return HttpResponse("".join(pieces).replace(CSRF_PLACEHOLDER, csrf_token(request)))


_CSRF_CHAR_INDEX = {char: index for index, char in enumerate(CSRF_ALLOWED_CHARS)}
_CSRF_EVEN_BELOW = 256 - 256 % len(CSRF_ALLOWED_CHARS)  # bytes under it map evenly onto the characters


def csrf_token(request: HttpRequest) -> str:
    """Django's get_token (the request's CSRF secret, masked afresh for every response, as BREACH
    requires), whose mask is drawn here from one os.urandom call: Django draws its 32 characters
    one secrets.choice at a time, which cost a tenth of a cached page. A request without a secret
    yet gets one from Django's own get_token."""
    secret = request.META.get("CSRF_COOKIE")
    if secret is None:
        return get_token(request)
    request.META["CSRF_COOKIE_NEEDS_UPDATE"] = True  # as get_token: the cookie's expiry renewed
    chars, count = CSRF_ALLOWED_CHARS, len(CSRF_ALLOWED_CHARS)
    mask = []
    while len(mask) < len(secret):
        mask += [chars[byte % count] for byte in os.urandom(2 * len(secret)) if byte < _CSRF_EVEN_BELOW]
    mask = mask[: len(secret)]
    index = _CSRF_CHAR_INDEX
    return "".join(mask) + "".join(chars[(index[s] + index[m]) % count] for s, m in zip(secret, mask, strict=True))


def _viewer_part_html(request: HttpRequest, template_name: str) -> str:
    user = request.user
    # Every user field a viewer part may show; updated_at moves with any save() of the user.
    visitor = (
        (user.pk, user.updated_at, user.display_name, user.handle, user.is_staff, user.is_active)
        if user.is_authenticated
        else None
    )
    key = (template_name, visitor, getattr(request.resolver_match, "view_name", None), get_language())
    html = _viewer_parts.get(key)
    if html is None:
        html = loader.render_to_string(template_name, {"csrf_token": CSRF_PLACEHOLDER}, request)
        _viewer_parts.put(key, html)
    return html


def viewer_part_render(context, template_name: str) -> str:
    """`{% viewer_part %}`: in a shared render, a marker (filled per request); otherwise the part itself."""
    parts = context.get(VIEWER_PARTS)
    if parts is not None:
        parts.append(template_name)
        return VIEWER_MARKER
    return context.template.engine.get_template(template_name).render(context)
