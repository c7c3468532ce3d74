"""Griffe extension for the API reference: reads the library's docstrings as numpydoc.

The library writes many numpydoc entries on one line as ``name : what it is`` (a description, not a
type; ``uxai describe`` reads them that way too) and uses reStructuredText markup (````code````,
``:class:`~pkg.Name```). Before griffe parses a docstring this extension

* turns ``name : description`` entries of Parameters / Attributes / Raises / Other Parameters sections
  into ``name`` plus the indented description, unless the text after the colon is a type
  (``int``, ``torch.Tensor``, ``str, default "haar"``, ``{"abs", "signed"}``, ``sequence of int, optional``);
* splits two entries written on one line (``seed : noise seed.  batch_size : ...``) and entries that
  name several parameters (``wavelet, levels, mode : the DWT.``);
* rewrites RST inline markup as Markdown (````x```` -> `` `x` ``, ``:func:`f``` -> `` `f()` ``).

For registered explainer classes, the Parameters section is generated from the registry (type,
default, allowed values and meaning of every parameter), as ``uxai describe`` shows them.

The source files are not changed; only what the documentation shows.
"""
from __future__ import annotations

import re

import griffe

SECTIONS = ("Parameters", "Attributes", "Raises", "Other Parameters", "Warns")
_ENTRY = re.compile(r"^(?P<indent>\s*)(?P<names>[A-Za-z_]\w*(?:, [A-Za-z_]\w*)*) : (?P<rest>.*)$")
_TYPE = re.compile(
    r"^(?:\{[^}]*\}|[A-Za-z_][\w.]*(?:\[[^\]]*\])?(?: (?:or|of|\|) [A-Za-z_][\w.]*(?:\[[^\]]*\])?)*)"
    r"(?:, (?:optional|default .+))?$")
_TWO_ON_ONE_LINE = re.compile(r"\s{2,}(?=[A-Za-z_]\w*(?:, [A-Za-z_]\w*)* : )")
_ROLE = re.compile(r":(?:py:)?(class|func|meth|mod|data|attr|obj|exc):`~?([^`]+)`")


def _is_type(text: str) -> bool:
    text = text.strip()
    return bool(_TYPE.match(text)) and not text.endswith(".")


def _role(match: re.Match) -> str:
    kind, target = match.groups()
    name = target.split(".")[-1] if match.group(0).count("~") or kind in ("class", "exc", "data", "attr") else target
    return f"`{name}()`" if kind in ("func", "meth") else f"`{name}`"


def rst_to_markdown(text: str) -> str:
    text = _ROLE.sub(_role, text)
    text = re.sub(r"\s::$", "", text, flags=re.M)  # RST literal-block markers: the indented block stays code
    text = re.sub(r"::$", ":", text, flags=re.M)
    return re.sub(r"``(.+?)``", r"`\1`", text)


def _is_dash(line: str) -> bool:
    return bool(re.fullmatch(r"\s*-{3,}\s*", line))


def rewrite(docstring: str) -> str:
    """The docstring with one-line ``name : description`` entries made numpydoc, and Markdown markup.

    Free text after a blank line inside a section (griffe would read it as more entries) starts a
    ``Notes`` section.
    """
    lines = docstring.splitlines()
    out: list[str] = []
    section = None
    previous_blank = False
    for i, line in enumerate(lines):
        following = lines[i + 1] if i + 1 < len(lines) else ""
        if line.strip() and _is_dash(following):  # a section title
            section = line.strip()
        elif section is not None and line.strip() and not line.startswith(" ") and not _is_dash(line):
            is_entry = bool(_ENTRY.match(line)) or (following.startswith(" ") and bool(following.strip()))
            if previous_blank and not is_entry:
                out.extend(["Notes", "-----"])
                section = "Notes"
            elif section in SECTIONS:
                for piece in _TWO_ON_ONE_LINE.split(line.strip()):
                    match = _ENTRY.match(piece)
                    if match and not _is_type(match["rest"]):
                        for name in match["names"].split(", "):  # one entry per name (griffe mixes up shared ones)
                            out.extend([name, "    " + match["rest"]])
                    else:
                        out.append(piece)
                previous_blank = False
                continue
        out.append(line)
        previous_blank = not line.strip()
    return rst_to_markdown("\n".join(out))


def _explainer_class(path: str):
    """The registered explainer class at ``path`` (``module.Class``), or None."""
    module_name, _, name = path.rpartition(".")
    if not module_name.startswith("unified_xai.explainers"):
        return None
    try:
        import importlib

        from unified_xai.explainers import Explainer

        cls = getattr(importlib.import_module(module_name), name, None)
    except Exception:  # noqa: BLE001  (no import, no registry table: the docstring stays as written)
        return None
    if isinstance(cls, type) and issubclass(cls, Explainer) and getattr(cls, "name", "") and cls.params:
        return cls
    return None


def registry_parameters(docstring: str, cls) -> str:
    """``docstring`` with its Parameters section replaced by the explainer's registry parameters
    (type, default and meaning; the same source as ``uxai describe``)."""
    from unified_xai.cli import docstring_params

    lines = docstring.splitlines()
    keep, skipping = [], False
    for i, line in enumerate(lines):
        following = lines[i + 1] if i + 1 < len(lines) else ""
        if line.strip() and _is_dash(following):
            skipping = line.strip() == "Parameters"
        if not skipping:
            keep.append(line)
    described = docstring_params(cls)
    entries = ["", "Parameters", "----------"]
    for key, spec in cls.params.items():
        kinds = spec.types or tuple(dict.fromkeys(type(c) for c in spec.choices or ()))
        types = " | ".join(t.__name__ for t in kinds) or "Any"
        if spec.allow_none and kinds:
            types += " | None"
        entries.append(f"{key} : {types}, default {spec.default!r}")
        meaning = spec.doc or described.get(key, "")
        allowed = spec.describe()
        plain = " or ".join(t.__name__ for t in spec.types)  # nothing the type does not say already
        if allowed not in ("any value", plain, plain + " or None") and not allowed.startswith("or "):
            meaning = f"{meaning} (allowed: {allowed})" if meaning else f"allowed: {allowed}"
        entries.append("    " + (meaning or "-"))
    # the section right after the summary paragraph, as numpydoc has it
    text = "\n".join(keep).rstrip().split("\n\n", 1)
    rest = ("\n\n" + text[1]) if len(text) > 1 else ""
    created = f'Registered as `{cls.name}`: `ux.create("{cls.name}", adapter, **params)`.'
    return text[0] + "\n\n" + created + "\n" + "\n".join(entries) + rest


class UXAIDocstrings(griffe.Extension):
    """Rewrite every docstring of the package before it is parsed (see the module docstring)."""

    def on_instance(self, *, node, obj, agent, **kwargs) -> None:
        if obj.docstring is None or not obj.docstring.value:
            return
        value = obj.docstring.value
        if getattr(obj, "kind", None) is griffe.Kind.CLASS:
            cls = _explainer_class(obj.path)
            if cls is not None:
                value = registry_parameters(value, cls)
        obj.docstring.value = rewrite(value)
