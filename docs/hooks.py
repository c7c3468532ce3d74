"""MkDocs hook: parameter tables generated from the explainer registry.

A page writes ``<!-- uxai-params: NAME -->`` on a line of its own; the build replaces it with the
table of explainer NAME's parameters (default, allowed values, meaning) read from the registry, the
same source as ``uxai describe NAME``. The tables therefore cannot drift from the code; an unknown
NAME fails the build. ``tests/test_docs.py`` checks that every built-in explainer has its table on
some page.
"""
from __future__ import annotations

import logging
import os
import re

os.environ.setdefault("HF_HUB_OFFLINE", "1")

log = logging.getLogger("mkdocs.hooks.uxai")
MARKER = re.compile(r"^<!--[ \t]*uxai-params:[ \t]*([\w.-]+)[ \t]*-->[ \t]*$", re.M)
#: explainer name -> page (relative to docs/) that shows its table, filled during the build
TABLES: dict[str, str] = {}


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _code(value) -> str:
    text = repr(value)
    return f"`{text}`" if "`" not in text else text


def params_table(name: str) -> str:
    """The markdown table of explainer ``name``'s parameters."""
    import unified_xai as ux
    from unified_xai.cli import docstring_params

    cls = ux.core.registry.get_explainer_class(name)
    from_doc = docstring_params(cls)
    rows = ["| parameter | default | allowed | meaning |", "|---|---|---|---|"]
    for key, spec in cls.params.items():
        meaning = spec.doc or from_doc.get(key, "")
        rows.append(f"| `{key}` | {_cell(_code(spec.default))} | {_cell(spec.describe())} | {_cell(meaning)} |")
    aliases = getattr(cls, "aliases", None) or {}
    tail = ""
    if aliases:
        tail = "\n\nDeprecated names still accepted (with a FutureWarning): " + ", ".join(
            f"`{old}` → `{new}`" for old, new in aliases.items()) + "."
    inputs = ", ".join(getattr(cls, "modalities", ()))
    head = f"Parameters of `{name}` (inputs: {inputs}; set them as `ux.create(\"{name}\", adapter, NAME=VALUE)` " \
           f"or `uxai explain ... -m {name} -p NAME=VALUE`):\n\n"
    return head + "\n".join(rows) + tail + "\n"


def on_page_markdown(markdown: str, page, config, files, **kwargs) -> str:
    def replace(match: re.Match) -> str:
        name = match.group(1)
        try:
            table = params_table(name)
        except Exception as exc:  # an unknown name or a broken import must fail a --strict build
            log.warning("%s: cannot build the parameter table of %r: %s", page.file.src_uri, name, exc)
            return f"*(parameter table of `{name}` unavailable: {exc})*"
        TABLES[name] = page.file.src_uri
        return table

    return MARKER.sub(replace, markdown)
