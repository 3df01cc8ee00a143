"""Screenshots of the main pages for docs/screenshots/ (shown in the README), written by the
browser tests as they pass, and the mobile check every page must meet."""

from pathlib import Path

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
DESKTOP = {"width": 1366, "height": 900}
MOBILE = {"width": 390, "height": 844}


def screenshot_save(page, *, name: str, full_page: bool = True) -> Path:
    """Writes docs/screenshots/<name>.png: the whole page as it is now (or, `full_page` False,
    only what the window shows: a smaller file for a long page)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def horizontal_overflow(page) -> int:
    """How many CSS pixels the page is wider than its window (0 when nothing scrolls sideways)."""
    return page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
