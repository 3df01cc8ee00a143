"""What a browser submits for a form of a page we rendered, to post exactly that through the test client."""

from html.parser import HTMLParser

# Inputs whose value a browser sends as it is (checkboxes and radios only when checked; files are chosen, not read).
_VALUE_INPUTS = {"", "text", "hidden", "number", "email", "url", "password", "search", "tel", "date"}


class _FormControls(HTMLParser):
    """The successful controls of every <form>, in document order; what sits in a <template> is not part of the page."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.forms: list[list[tuple[str, str]]] = []
        self._in_form = False
        self._template_depth = 0
        self._textarea: tuple[str, list[str]] | None = None
        self._select: tuple[str, list[tuple[str, bool]]] | None = None
        self._option: tuple[str | None, bool, list[str]] | None = None

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "template":
            self._template_depth += 1
        if self._template_depth:
            return
        if tag == "form":
            self._in_form = True
            self.forms.append([])
            return
        if not self._in_form or "disabled" in attributes:
            return
        name = attributes.get("name")
        if tag == "input" and name:
            kind = (attributes.get("type") or "").lower()
            if kind in {"checkbox", "radio"}:
                if "checked" in attributes:
                    self.forms[-1].append((name, attributes.get("value") or "on"))
            elif kind in _VALUE_INPUTS:
                self.forms[-1].append((name, attributes.get("value") or ""))
        elif tag == "textarea" and name:
            self._textarea = (name, [])
        elif tag == "select" and name:
            self._select = (name, [])
        elif tag == "option" and self._select is not None:
            self._option = (attributes.get("value"), "selected" in attributes, [])

    def handle_data(self, data):
        if self._textarea is not None:
            self._textarea[1].append(data)
        if self._option is not None:
            self._option[2].append(data)

    def handle_endtag(self, tag):
        if tag == "template":
            self._template_depth -= 1
        if self._template_depth:
            return
        if tag == "form":
            self._in_form = False
        elif tag == "textarea" and self._textarea is not None:
            name, parts = self._textarea
            # The HTML parser of a browser drops the newline right after <textarea>.
            self.forms[-1].append((name, "".join(parts).removeprefix("\n")))
            self._textarea = None
        elif tag == "option" and self._option is not None:
            value, selected, text = self._option
            self._select[1].append((value if value is not None else "".join(text).strip(), selected))
            self._option = None
        elif tag == "select" and self._select is not None:
            name, options = self._select
            chosen = [value for value, selected in options if selected] or [value for value, _ in options[:1]]
            self.forms[-1].extend((name, value) for value in chosen)
            self._select = None


def browser_form(page: str, containing: str) -> dict[str, list[str]]:
    """The fields the form holding a control named `containing` sends as the page shows it, each name to its values."""
    parser = _FormControls()
    parser.feed(page)
    for controls in parser.forms:
        if any(name == containing for name, _ in controls):
            fields: dict[str, list[str]] = {}
            for name, value in controls:
                fields.setdefault(name, []).append(value)
            return fields
    raise AssertionError(f"no form on the page has a control named {containing!r}")
