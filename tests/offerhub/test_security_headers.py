"""Every response carries a Content-Security-Policy and a Permissions-Policy, and the
templates hold nothing the policy would block (inline scripts, handlers or styles)."""

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.template.loaders.app_directories import get_app_template_dirs

pytestmark = pytest.mark.django_db


def directives(response) -> dict[str, list[str]]:
    policy = response["Content-Security-Policy"]
    return {name: values for name, *values in (part.split() for part in policy.split(";") if part.strip())}


@pytest.mark.parametrize("path", ["/", "/accounts/login/", "/api/v1/health", "/api/v1/no-such-endpoint"])
def test_pages_and_api_answers_carry_the_policies(client, path):
    response = client.get(path)
    policy = directives(response)
    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"] == ["'self'"]  # no inline scripts, no eval
    assert policy["style-src"] == ["'self'"]
    assert policy["object-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["base-uri"] == ["'self'"]
    assert policy["form-action"] == ["'self'"]
    permissions = response["Permissions-Policy"]
    for feature in ("camera=()", "microphone=()", "geolocation=()", "payment=()", "usb=()"):
        assert feature in permissions


def template_files() -> list[Path]:
    directories = [*settings.TEMPLATES[0]["DIRS"], *get_app_template_dirs("templates")]
    own = [Path(d) for d in directories if ".venv" not in str(d) and "site-packages" not in str(d)]
    return sorted(path for directory in own for path in directory.rglob("*.html"))


INLINE = {
    "inline script": re.compile(r"<script(?![^>]*\ssrc=)[^>]*>", re.I),
    "event handler attribute": re.compile(r"<[^>]*\son[a-z]+\s*=", re.I),
    "javascript: URL": re.compile(r"javascript:", re.I),
    "style attribute": re.compile(r"<[^>]*\sstyle\s*=", re.I),
    "style element": re.compile(r"<style[\s>]", re.I),
}


def test_templates_hold_nothing_the_policy_blocks():
    files = template_files()
    assert any(path.name == "base.html" for path in files)
    found = [
        f"{path}: {what}" for path in files for what, pattern in INLINE.items() if pattern.search(path.read_text())
    ]
    assert not found, "move these into static/ files:\n" + "\n".join(found)
