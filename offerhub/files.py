"""Private files: uploads only the people they concern may read (delivery evidence, …).

They live in their own storage (`STORAGES["private"]`, files under `PRIVATE_MEDIA_ROOT`,
outside `MEDIA_ROOT`), so no URL of the public media ever reaches them, and they are served
only by views that checked who is asking, through `private_file_response`. In production
the web server can send the bytes itself (`PRIVATE_MEDIA_SERVE`, docs/deployment.md).
"""

import logging
import mimetypes
import os
import weakref
from urllib.parse import quote

from django.conf import settings
from django.core.checks import Error, Tags, register
from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import FileSystemStorage, Storage, storages
from django.db import transaction
from django.http import FileResponse, Http404, HttpResponse
from django.utils.functional import cached_property
from django.utils.http import content_disposition_header

logger = logging.getLogger(__name__)

SERVE_MODES = ("django", "x-accel-redirect", "x-sendfile")


class PrivateFileSystemStorage(FileSystemStorage):
    """A FileSystemStorage rooted at PRIVATE_MEDIA_ROOT that has no public URL."""

    @cached_property
    def base_location(self):
        return self._value_or_setting(self._location, settings.PRIVATE_MEDIA_ROOT)

    def url(self, name):
        raise ValueError("private files have no public URL: link to the view that checks who may read them")

    def _clear_cached_properties(self, setting, **kwargs):
        super()._clear_cached_properties(setting, **kwargs)
        if setting == "PRIVATE_MEDIA_ROOT":
            self.__dict__.pop("base_location", None)
            self.__dict__.pop("location", None)


def private_storage() -> Storage:
    """The storage of private files (a callable, so that settings choose it at run time)."""
    return storages["private"]


class _Committed:
    """What a stored file's on_commit hook records: whether it ran (the transaction committed)."""

    __slots__ = ("ran",)

    def __init__(self):
        self.ran = False


class _StoredFileHook:
    """The on_commit hook of a file stored in a transaction. Run, it keeps the file. Django drops
    the hooks of a transaction or savepoint rolled back (`rollback()` empties the list, a savepoint
    rolled back filters it): this one then goes without having run, and its finalizer deletes the
    file. Nothing else holds the hook, so in CPython that is the moment Django drops it."""

    __slots__ = ("__weakref__", "committed")

    def __init__(self, committed: _Committed):
        self.committed = committed

    def __call__(self):
        self.committed.ran = True


def file_delete_on_rollback(*, storage: Storage, name: str, using: str | None = None) -> None:
    """Delete the file `name`, just stored in `storage`, if the transaction around (or the
    savepoint it was stored in) rolls back: however it does, by an error in the service, in a
    write deferred to the block's end (offerhub.services.outbox_row_update), at COMMIT (a deferred
    constraint), or `transaction.set_rollback(True)`. Kept once the transaction commits. Outside a
    transaction nothing is undone, so nothing is deleted. Django has no on_rollback hook: this is one
    for files, an on_commit hook whose being dropped unrun deletes the file."""
    connection = transaction.get_connection(using)
    if not name or not connection.in_atomic_block:
        return
    committed = _Committed()
    hook = _StoredFileHook(committed)
    finalizer = weakref.finalize(hook, _stored_file_dropped, committed, connection, storage, name)
    finalizer.atexit = False  # a transaction open at exit is rolled back by the server; no IO then
    transaction.on_commit(hook, using=using, robust=True)


def _stored_file_dropped(committed: _Committed, connection, storage: Storage, name: str) -> None:
    if committed.ran:
        return
    # Dropped outside a transaction while Django's commit hooks are still marked to run: the
    # transaction committed and an earlier hook raised before this one ran. Kept: better an orphan
    # (also the rare case of a rollback right after such a commit) than a committed file lost.
    if not connection.in_atomic_block and connection.run_commit_hooks_on_set_autocommit_on:
        logger.warning("kept %s: its transaction committed but its on_commit hooks were cut short", name)
        return
    # The connection lost (e.g. COMMIT's answer never came): the server may have committed.
    # Kept: an orphan file at worst, never a committed one lost.
    raw = connection.connection
    if raw is None or getattr(raw, "closed", False) or getattr(raw, "broken", False):
        logger.warning("kept %s: the connection was lost, its transaction's outcome is unknown", name)
        return
    try:
        storage.delete(name)
    except Exception:
        logger.exception("could not delete %s, stored by a transaction rolled back", name)


def private_file_response(file, *, filename: str, inline: bool = False) -> HttpResponse:
    """A private file as a download (or, `inline`, shown in the page: only for images whose
    content was checked on upload), for a request whose right to it was already checked.

    `PRIVATE_MEDIA_SERVE` decides who sends the bytes: Django itself ("django"), or the web
    server in front, told by `X-Accel-Redirect` (nginx, an `internal` location serving
    PRIVATE_MEDIA_ROOT at PRIVATE_MEDIA_ACCEL_PREFIX) or `X-Sendfile` (Apache, lighttpd)."""
    mode = settings.PRIVATE_MEDIA_SERVE
    if mode not in SERVE_MODES:
        raise ImproperlyConfigured(f"PRIVATE_MEDIA_SERVE must be one of {', '.join(SERVE_MODES)}, not {mode!r}")
    if not file or not file.storage.exists(file.name):
        raise Http404("No such file")
    content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    if mode == "django":
        response = FileResponse(file.open("rb"), as_attachment=not inline, filename=filename, content_type=content_type)
    else:
        response = HttpResponse(content_type=content_type)
        response["Content-Disposition"] = content_disposition_header(not inline, filename)
        if mode == "x-accel-redirect":
            response["X-Accel-Redirect"] = settings.PRIVATE_MEDIA_ACCEL_PREFIX.rstrip("/") + "/" + quote(file.name)
        else:
            response["X-Sendfile"] = file.path
    # Never rendered inline as something else, never kept by a shared cache.
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"  # nothing in it ever runs
    response["Cache-Control"] = "private, no-store"
    return response


def upload_refusal(upload, *, types: dict[str, tuple[bytes, ...] | None], max_bytes: int) -> str | None:
    """Why an uploaded file is refused, in plain words, or None: its extension must be one of
    `types` (extension → the bytes such a file starts with; None for UTF-8 text without NUL),
    its size at most `max_bytes`, and its content what its name says."""
    name = upload.name or ""
    extension = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if extension not in types:
        kinds = ", ".join(e.upper() for e in types if e != "jpeg")
        return f"“{name}” is not a file type we accept ({kinds})."
    if upload.size > max_bytes:
        return f"“{name}” is larger than {max_bytes // (1024 * 1024)} MB."
    upload.seek(0)
    head = upload.read(4096)
    upload.seek(0)
    signatures = types[extension]
    if signatures is None:
        ok = b"\x00" not in head and _is_utf8(head)
    else:
        ok = any(head.startswith(signature) for signature in signatures)
        if extension == "webp":
            ok = ok and head[8:12] == b"WEBP"
    return None if ok else f"“{name}” does not look like a {extension.upper()} file."


def _is_utf8(head: bytes) -> bool:
    """UTF-8 text, allowing for a character cut at the end of the sample."""
    for cut in range(4):
        try:
            head[: len(head) - cut].decode("utf-8")
            return True
        except UnicodeDecodeError:
            continue
    return False


def private_files_move(*, prefix: str, source: Storage, destination: Storage) -> dict[str, str]:
    """Move every file under `prefix` from one storage to the other (public media → private,
    and back). Returns {old name: new name} for each file moved; a name differs only when the
    destination already held another file by that name, and then callers update their rows."""
    moved = {}
    for name in _files_under(source, prefix.rstrip("/")):
        with source.open(name, "rb") as content:
            if destination.exists(name) and destination.size(name) == source.size(name):
                saved = name  # copied by an earlier run that stopped before deleting
            else:
                saved = destination.save(name, content)
        source.delete(name)
        moved[name] = saved
    return moved


def _files_under(storage: Storage, directory: str):
    try:
        directories, files = storage.listdir(directory)
    except FileNotFoundError:
        return
    for name in sorted(files):
        yield f"{directory}/{name}"
    for sub in sorted(directories):
        yield from _files_under(storage, f"{directory}/{sub}")


@register(Tags.security, deploy=False)
def private_media_check(app_configs=None, **kwargs) -> list[Error]:
    """Private files must not be reachable through a directory the server publishes."""
    errors = []
    private = os.path.realpath(settings.PRIVATE_MEDIA_ROOT)
    for name in ("MEDIA_ROOT", "STATIC_ROOT"):
        public = os.path.realpath(getattr(settings, name) or "")
        if getattr(settings, name) and os.path.commonpath([private, public]) in (private, public):
            errors.append(
                Error(
                    f"PRIVATE_MEDIA_ROOT ({private}) overlaps {name} ({public}), which is served to anyone.",
                    hint=f"Point PRIVATE_MEDIA_ROOT at a directory outside {name}.",
                    id="offerhub.E001",
                )
            )
    if settings.PRIVATE_MEDIA_SERVE not in SERVE_MODES:
        errors.append(
            Error(
                f"PRIVATE_MEDIA_SERVE is {settings.PRIVATE_MEDIA_SERVE!r}.",
                hint=f"Use one of: {', '.join(SERVE_MODES)}.",
                id="offerhub.E002",
            )
        )
    return errors
