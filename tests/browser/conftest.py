import os
import re
import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("Chromium is missing: .ci/run installs Debian's chromium package")
        pytest.skip("install Debian's chromium (apt-get install chromium) to run the browser tests")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop on this thread while it runs; the ORM calls
    # the tests and fixtures make meanwhile are still synchronous. Both end with the module,
    # so later tests (Channels' async_to_sync) find no loop on their thread.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield browser
        browser.close()
    if previous is None:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


def policy_violations(page) -> list[str]:
    """Collects what the browser refuses under the Content-Security-Policy or the
    Permissions-Policy (an inline script, style or handler, an eval, an unknown feature)."""
    violations = []
    policies = re.compile(r"Content.Security.Policy|Permissions.Policy")

    def console(message):
        if message.type in ("error", "warning") and policies.search(message.text):
            violations.append(message.text)

    page.on("console", console)
    return violations


@pytest.fixture
def page(browser, request):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    violations = policy_violations(page)
    yield page
    assert not violations, "refused by the page's security policies:\n" + "\n".join(violations)
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()


@pytest.fixture
def viewport() -> dict:
    """The browser window of `people`'s pages (a test module may override it)."""
    return {"width": 1280, "height": 900}


@pytest.fixture
def people(browser, request, viewport):
    """One browser context (own cookies) per person, optionally without WebSockets;
    screenshots of each when the test fails, and no page may break the security policies."""
    contexts, violations = {}, []

    def open_page(name, *, websockets=True):
        context = browser.new_context(viewport=viewport)
        page = context.new_page()
        page.set_default_timeout(15_000)
        violations.append(policy_violations(page))
        if not websockets:  # as behind a proxy that drops them: the page polls instead
            page.route_web_socket(re.compile(r"/ws/"), lambda socket: socket.close(code=1011, reason="no sockets"))
        contexts[name] = (context, page)
        return page

    yield open_page
    failed = getattr(request.node, "rep_call", None)
    for name, (context, page) in contexts.items():
        if failed is not None and failed.failed:
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / f"{request.node.name}-{name}.png"), full_page=True)
        context.close()
    refused = [text for page_violations in violations for text in page_violations]
    assert not refused, "refused by the pages' security policies:\n" + "\n".join(refused)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.rep_call = report
