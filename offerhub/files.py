"""Private files: uploads only the people they concern may read (delivery evidence, …).

They live in their own storage (`STORAGES["private"]`, files under `PRIVATE_MEDIA_ROOT`,
outside `MEDIA_ROOT`), so no URL of the public media ever reaches them, and they are served
only by views that checked who is asking, through `private_file_response`. In production
the web server can send the bytes itself (`PRIVATE_MEDIA_SERVE`, docs/deployment.md).
"""

import mimetypes
import os
from urllib.parse import quote

from django.conf import settings
from django.core.checks import Error, Tags, register
from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import FileSystemStorage, Storage, storages
from django.http import FileResponse, Http404, HttpResponse
from django.utils.functional import cached_property
from django.utils.http import content_disposition_header

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
