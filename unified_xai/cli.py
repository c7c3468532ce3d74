"""The ``uxai`` command line.

Bad input (every :class:`~unified_xai.core.errors.UXAIError`, a missing file, a usage error) prints one
line ``error: <what is wrong and how to fix it>`` on stderr and exits with status 2; an unexpected
exception prints one line and exits with status 1. ``uxai --debug ...`` adds the traceback. Both the
``uxai`` entry point and ``app()`` go through :class:`UXAIGroup.main`, so tests see the same behaviour.

Every ``explain`` run writes to its own folder ``OUT/<model>/<method>[-<non-default settings>]/``
(``explanation.h5`` and one ``<input name>.png`` per input): runs with other models, methods or
settings never overwrite each other, and a rerun with identical settings replaces its own folder.

``concepts`` stores the CRAFT concept bank of each class in ``OUT/<model>/concepts/banks/`` (found again
by its key, so a rerun reuses it) and draws ``OUT/<model>/concepts/<class>.png``.
"""
from __future__ import annotations

import ast
import hashlib
import importlib
import inspect
import os
import re
import sys
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional

import typer
from typer.core import TyperGroup

import unified_xai as ux
from .core.errors import InputError, ParameterError, UnknownNameError, UXAIError
from .core.storage import atomic_write, clean_stale_temporaries

#: the best registered method first; ``explain`` and the demo default to the first available
PREFERRED_METHODS = ("wam", "saliency")
DEFAULT_N = 4
#: the real ImageNet model, reported on first by the demo when installed
REAL_MODEL = "efficientnet-lite0-imagenet"
#: explainer parameters that change speed or memory, never the result: left out of run folder names
_NOT_IN_NAMES = ("batch_size",)
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")
_STATE = {"debug": False}


# --------------------------------------------------------------------------- errors, once for every command
class UXAIGroup(TyperGroup):
    """The ``uxai`` command group: one-line errors with exit status 2 for bad input (see module doc)."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        args = list(sys.argv[1:] if args is None else args)
        debug = "--debug" in args or os.environ.get("UXAI_DEBUG", "") not in ("", "0")
        if "--debug" in args:  # a global option, accepted anywhere on the line
            args = ["--debug"] + [a for a in args if a != "--debug"]
        _STATE["debug"] = debug
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            code = _run_guarded(lambda: super(UXAIGroup, self).main(
                args=args, prog_name="uxai", complete_var=complete_var, standalone_mode=False,
                **extra), debug)
        if standalone_mode:
            sys.exit(code)
        return code


def _click_classes(name: str) -> tuple:
    """``name`` (Exit, Abort, ClickException) from click and from typer's own copy of it (typer >= 0.16)."""
    found = [getattr(typer, name)] if hasattr(typer, name) else []
    for module in ("typer._click.exceptions", "click.exceptions"):
        try:
            found.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            continue
    return tuple(dict.fromkeys(found))


_EXIT, _ABORT, _USAGE = _click_classes("Exit"), _click_classes("Abort"), _click_classes("ClickException")


def _run_guarded(call, debug: bool) -> int:
    """Run the click command; return its exit status after printing any error as one line."""
    try:
        result = call()
    except _EXIT as exc:
        return exc.exit_code
    except _USAGE as exc:  # usage errors: bad option values, missing arguments
        if type(exc).__name__ == "NoArgsIsHelpError":  # `uxai` alone: the help (rich prints it while building it)
            if exc.format_message().strip():
                typer.echo(exc.format_message())
            return exc.exit_code
        hint = ""
        ctx = getattr(exc, "ctx", None)
        if ctx is not None:
            hint = f" (see '{ctx.command_path} --help')"
        _error(exc.format_message() + hint)
        return exc.exit_code
    except _ABORT:
        _error("aborted")
        return 1
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except (UXAIError, OSError) as exc:  # bad input, or a file that cannot be read or written
        if debug:
            traceback.print_exc()
        _error(_message(exc))
        return 2
    except Exception as exc:  # noqa: BLE001  (anything else is a bug: say so in one line)
        if debug:
            traceback.print_exc()
            _error(f"{type(exc).__name__}: {_message(exc)}")
        else:
            _error(f"{type(exc).__name__}: {_message(exc)} (an unexpected error; run with --debug for the traceback)")
        return 1
    return result if isinstance(result, int) else 0


def _message(exc: BaseException) -> str:
    text = str(exc) if str(exc) else type(exc).__name__
    return " ".join(text.split())  # one line, whatever the message holds


def _error(message: str) -> None:
    typer.echo(typer.style("error:", fg="red", bold=True) + " " + message, err=True)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    where = f" [{category.__name__} at {filename}:{lineno}]" if _STATE["debug"] else ""
    typer.echo(typer.style("warning:", fg="yellow", bold=True) + " " + _message(message) + where, err=True)


def _version(value: bool):
    if value:
        typer.echo(f"uxai (unified-xai) {ux.__version__}")
        raise typer.Exit()


app = typer.Typer(cls=UXAIGroup, help="unified-xai: where a classifier looks, at what wavelet scale, which concept.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="show the traceback of errors (also UXAI_DEBUG=1)"),
          version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="print the version and exit")):
    """unified-xai: where a classifier looks, at what wavelet scale, which concept."""
    _STATE["debug"] = _STATE["debug"] or debug


def main(args: Optional[List[str]] = None, standalone_mode: bool = True):
    """The ``uxai`` entry point; returns the exit status when ``standalone_mode`` is False."""
    return typer.main.get_command(app).main(args=args, prog_name="uxai", standalone_mode=standalone_mode)


# --------------------------------------------------------------------------- option parsing
def _console():
    from rich.console import Console

    return Console(soft_wrap=True, highlight=False)  # paths must stay copyable, never wrapped


def _default_method() -> str:
    names = ux.list_explainers()
    return next(m for m in PREFERRED_METHODS if m in names)


def _parse_value(raw: str) -> Any:
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        lowered = raw.strip().lower()
        if lowered in ("none", "null"):
            return None
        if lowered in ("true", "false"):
            return lowered == "true"
        return raw  # a bare word such as smoothgrad


def _parse_params(items: Optional[List[str]]) -> dict:
    params: dict = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ParameterError(f"--param takes NAME=VALUE (e.g. -p n_samples=16), got {item!r}")
        if key in params:
            raise ParameterError(f"--param {key} is given twice; give each parameter once")
        params[key] = _parse_value(raw)
    return params


def parse_input_shape(raw: Optional[str]) -> Optional[tuple]:
    """``"3,224,224"`` -> ``(3, 224, 224)``; ``none`` (or ``any``) for a free spatial size."""
    if raw is None:
        return None
    usage = ("--input-shape takes C,SPATIAL... with 1 to 3 spatial sizes, e.g. 3,224,224 (image), 1,16000"
             " (audio) or 1,32,32,32 (volume); 'none' for a free spatial size (3,none,none)")
    parts = [p for p in re.split(r"[,x×\s]+", raw.strip().lower()) if p]
    if not 2 <= len(parts) <= 4:
        raise ParameterError(f"{usage}; got {raw!r}")
    shape: list = []
    for i, part in enumerate(parts):
        if part in ("none", "any", "?", "*") and i > 0:
            shape.append(None)
            continue
        if not re.fullmatch(r"[0-9]+", part) or int(part) < 1:
            what = "the channel count" if i == 0 else f"spatial size {i}"
            raise ParameterError(f"{usage}; {what} is {part!r}, not a positive integer, in {raw!r}")
        shape.append(int(part))
    return tuple(shape)


def _parse_batch_size(raw: Optional[str]):
    if raw is None:
        return None
    if raw.strip().lower() == "auto":
        return "auto"
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ParameterError(f"--batch-size takes a positive integer or 'auto' (probe the fastest size), got {raw!r}")
    return value


def check_device(device: str) -> str:
    """Refuse a device this machine does not have, in the command line's words."""
    import torch

    if device == "auto":
        return device
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ParameterError(f"--device {device!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ParameterError(f"--device {device}: this machine has no CUDA GPU visible to torch;"
                                 f" use --device cpu (or auto, which picks a GPU when there is one)")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ParameterError(f"--device {device}: this machine has {torch.cuda.device_count()} GPU(s),"
                                 f" cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    elif resolved.type == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise ParameterError(f"--device {device}: Apple MPS is not available here; use --device cpu")
    elif resolved.type != "cpu":
        raise ParameterError(f"--device {device!r} is not supported; use auto, cpu, cuda or cuda:N")
    return device


def _parse_targets(raw: Optional[List[str]]) -> Optional[list]:
    """Indices as ints, anything else as class names (the adapter matches them, case-insensitive)."""
    if not raw:
        return None
    targets: list = []
    for item in raw:
        for part in [p.strip() for p in item.split(",")] if "," in item and _all_ints(item) else [item.strip()]:
            targets.append(int(part) if re.fullmatch(r"[+-]?\d+", part) else part)
    return targets


def _all_ints(text: str) -> bool:
    return all(re.fullmatch(r"\s*[+-]?\d+\s*", p) for p in text.split(","))


def _looks_like_factory(name: Optional[str]) -> bool:
    return bool(name) and ":" in name and not name.startswith("timm:") and not os.path.exists(name)


def load_model_from_cli(model: str, *, arch: Optional[str] = None, input_shape: Optional[tuple] = None,
                        device: str = "auto", batch_size=None, progress: bool = True,
                        sample_rate: Optional[float] = None):
    """``ux.data.load_model`` with the command line's options (``module:factory`` importable from the cwd)."""
    if _looks_like_factory(model) or _looks_like_factory(arch):
        cwd = os.getcwd()
        if cwd not in sys.path:
            sys.path.insert(0, cwd)
        importlib.invalidate_caches()
    if Path(model).suffix.lower() in CHECKPOINT_SUFFIXES and not Path(model).exists():
        raise InputError(f"checkpoint file {model!r} does not exist (relative to {os.getcwd()})")
    kwargs: dict = {"device": device, "progress": None if progress else False}
    if batch_size is not None:
        kwargs["batch_size"] = batch_size
    if input_shape is not None:
        kwargs["input_shape"] = input_shape
    if arch is not None:
        kwargs["arch"] = arch
    if sample_rate is not None:
        kwargs["sample_rate"] = sample_rate
    try:
        return ux.data.load_model(model, **kwargs)
    except ParameterError as exc:
        text = str(exc)
        hints = []  # the library's words are keyword arguments; add the command line's options
        if "arch=" in text:
            hints.append("--arch ARCH")
        if "input_shape=" in text:
            hints.append("--input-shape C,SPATIAL... (e.g. 3,224,224; none for a free size)")
        if hints:
            raise ParameterError(f"{text} — on the command line: {' and '.join(hints)}") from exc
        raise


# --------------------------------------------------------------------------- run folders
def _slug(text: str, limit: int = 96) -> str:
    slug = re.sub(r"[^A-Za-z0-9._+=-]+", "_", str(text)).strip("._-") or "x"
    if len(slug) > limit:
        slug = slug[: limit - 9].rstrip("._-") + "-" + _digest(text)[:8]
    return slug


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def _shape_label(shape) -> str:
    return "x".join("any" if s is None else str(s) for s in shape)


def _is_path(name: str) -> bool:
    return Path(name).suffix.lower() in CHECKPOINT_SUFFIXES or os.path.sep in name or os.path.exists(name)


def model_folder_name(model: str, arch: Optional[str] = None, input_shape: Optional[tuple] = None,
                      sample_rate: Optional[float] = None) -> str:
    """The model part of a run folder: the model id (a checkpoint also by where it is) and its options."""
    if model not in ux.data.list_models() and not model.startswith("timm:") and _is_path(model):
        base = f"{Path(model).stem}-{_digest(str(Path(model).resolve()))[:6]}"
    else:
        base = model
    parts = [base]
    if arch:
        parts.append(f"arch_{arch}")
    if input_shape is not None:
        parts.append(_shape_label(input_shape))
    if sample_rate is not None:
        parts.append(f"sr{sample_rate:g}")
    return _slug("-".join(parts))


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is b
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001  (tensors and arrays: compare as plain data)
        return repr(a) == repr(b)


def non_default_settings(explainer_cls, config: dict, given: dict) -> list[tuple[str, Any]]:
    """(name, value) of the parameters given explicitly with a value other than the default, in spec order."""
    out = []
    for key, spec in explainer_cls.params.items():
        if key not in given or key in _NOT_IN_NAMES:
            continue
        default = spec.validate(key, spec.default, explainer_cls.name)
        if not _same(config[key], default):
            out.append((key, config[key]))
    return out


def _setting_label(key: str, value: Any, spec) -> str:
    if isinstance(value, str) and spec is not None and spec.choices is not None:
        return value  # wam-smoothgrad, sobol-blur
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{key}{value:g}" if isinstance(value, float) else f"{key}{value}"
    return f"{key}_{value}"


def run_folder_name(method: str, explainer_cls, settings: list[tuple[str, Any]], extras: list[str]) -> str:
    labels = [method] + [_setting_label(k, v, explainer_cls.params.get(k)) for k, v in settings] + extras
    return _slug("-".join(labels), limit=120)


def _unique_names(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        base = _slug(name, limit=80)
        count = seen.get(base.lower(), 0)
        seen[base.lower()] = count + 1
        out.append(base if count == 0 else f"{base}-{count + 1}")
    return out


# --------------------------------------------------------------------------- one explanation run
@dataclass
class RunResult:
    folder: Path
    h5: Path
    pngs: list
    explanation: Any
    names: list
    probabilities: Any  # (B, K) softmax of the model's outputs on the inputs


def explain_to_folder(adapter, x, names: list[str], method: str, params: dict, folder: Path,
                      targets=None) -> RunResult:
    """Explain ``x`` and write ``folder/explanation.h5`` plus one ``<name>.png`` per input (atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    explainer = ux.create(method, adapter, **params)
    explanation = explainer.explain(x, targets=targets)
    with torch.no_grad():
        probabilities = torch.softmax(adapter.predict(explanation.inputs).float(), dim=1).cpu()
    folder.mkdir(parents=True, exist_ok=True)
    h5_path = folder / "explanation.h5"
    explanation.save(h5_path)
    pngs = []
    for i, name in enumerate(_unique_names(names)):
        fig = explanation.plot(i)
        path = folder / f"{name}.png"
        try:
            with atomic_write(path) as handle:
                fig.savefig(handle, format="png", dpi=100)
        finally:
            plt.close(fig)
        pngs.append(path)
    kept = {p.name for p in pngs}
    for old in folder.glob("*.png"):  # figures of an earlier run of these settings on other inputs
        if old.name not in kept:
            old.unlink(missing_ok=True)
    return RunResult(folder, h5_path, pngs, explanation, names, probabilities)


def _format_value(value: Any, width: int = 40) -> str:
    text = repr(value)
    if hasattr(value, "shape") and not isinstance(value, (int, float)):
        text = f"<tensor {tuple(value.shape)}>"
    return text if len(text) <= width else text[: width - 3] + "..."


def print_run_summary(console, result: RunResult, adapter, method: str, settings: list, notes: list[str],
                      seconds: float) -> None:
    """Targets (with class names), parameters, elapsed time, conversions and the paths written."""
    from rich.markup import escape

    explanation = result.explanation
    n = len(explanation)
    console.print(f"[bold]explained[/bold] {n} input{'s' if n != 1 else ''} of {escape(adapter.name)} with"
                  f" {escape(method)} in {explanation.elapsed:.1f} s ({seconds:.1f} s with loading and writing;"
                  f" device {adapter.device})")
    changed = {k for k, _ in settings}
    items = [f"{k}={_format_value(v)}" + ("*" if k in changed else "") for k, v in explanation.params.items()]
    console.print("[bold]parameters:[/bold] " + escape(", ".join(items))
                  + (" (* set by you)" if changed else " (all defaults)"))
    if notes:
        console.print("[bold]conversions:[/bold]")
        for note in notes:
            console.print("  " + escape(note))
    console.print(f"[bold]written:[/bold] {escape(str(result.h5))}")
    targets = explanation.targets.cpu().tolist()
    names = explanation.target_names
    for i, path in enumerate(result.pngs):
        t = int(targets[i])
        p = float(result.probabilities[i, t])
        predicted = int(result.probabilities[i].argmax())
        other = f"{predicted} {explanation.class_name(predicted)!r}" if explanation.class_names else str(predicted)
        why = "predicted" if predicted == t else f"asked for; predicted {other}"
        label = f" {names[i]!r}" if explanation.class_names else ""
        chance = f"{p:.2f}" if p >= 0.01 else f"{p:.0e}"
        console.print(f"  {escape(str(path))}  target {t}{escape(label)} ({escape(why)}, p={chance})")


# --------------------------------------------------------------------------- commands
_MODEL_HELP = "built-in name (uxai list), timm:<name>, a checkpoint path (.pt) or module:factory"
_SHAPE_HELP = "input shape C,SPATIAL... e.g. 3,224,224 or 1,16000; none for a free size (3,none,none)"
_ARCH_HELP = "architecture of a plain state_dict checkpoint: built-in arch or model, timm:<name> or module:factory"


@app.command("list")
def list_command():
    """List registered explainers and built-in models and datasets."""
    console = _console()
    console.print("[bold]explainers:[/bold] " + ", ".join(ux.list_explainers()) + "  (uxai describe METHOD)")
    console.print("[bold]built-in models:[/bold] " + ", ".join(ux.data.list_models()))
    console.print("[bold]built-in datasets:[/bold] " + ", ".join(ux.data.list_datasets()))
    console.print("models also load as timm:<name>, a checkpoint path (.pt, with --arch for a plain state_dict)"
                  " or module:factory (importable from the current folder, with --input-shape)")


def _doc_paragraph(cls) -> str:
    doc = inspect.getdoc(cls) or ""
    return _plain_rst(" ".join(doc.split("\n\n")[0].split()))


def _plain_rst(text: str) -> str:
    text = re.sub(r":\w+:`~?([^`]+)`", r"\1", text)
    return text.replace("``", "")


def docstring_params(cls) -> dict[str, str]:
    """``name : text`` entries of a numpy-style ``Parameters`` section (several names may share one)."""
    doc = inspect.getdoc(cls) or ""
    match = re.search(r"^Parameters\n-+\n(.*?)(?:\n\s*\n|\Z)", doc, flags=re.S | re.M)
    if not match:
        return {}
    entries: list[list] = []
    for line in match.group(1).splitlines():
        pieces = re.split(r"\s{2,}(?=[\w, ]+ : )", line.strip()) if not line.startswith(" ") else [line]
        for piece in pieces:
            head = re.match(r"^([A-Za-z_][\w]*(?:, [A-Za-z_]\w*)*) : (.*)$", piece.strip())
            if head and not piece.startswith(" "):
                entries.append([[n.strip() for n in head.group(1).split(",")], head.group(2).strip()])
            elif entries:
                entries[-1][1] += " " + piece.strip()
    return {name: _plain_rst(text) for names, text in entries for name in names}


@app.command()
def describe(method: str = typer.Argument(..., help="explainer name (see `uxai list`)")):
    """Show an explainer's parameters: default, allowed values and what they do."""
    from rich.markup import escape

    cls = ux.core.registry.get_explainer_class(method)
    console = _console()
    console.print(f"[bold]{escape(method)}[/bold]: {escape(_doc_paragraph(cls))}")
    modalities = getattr(cls, "modalities", ())
    if modalities:
        console.print(f"inputs: {', '.join(modalities)}")
    from_doc = docstring_params(cls)
    rows = [(name, repr(spec.default), spec.describe(), spec.doc or from_doc.get(name, ""))
            for name, spec in cls.params.items()]
    console.print(f"[bold]parameters[/bold] (set with -p NAME=VALUE):" if rows else "no parameters")
    width = max((len(r[0]) for r in rows), default=0)
    dwidth = max((len(r[1]) for r in rows), default=0)
    for name, default, allowed, doc in rows:
        console.print(f"  {escape(name.ljust(width))}  default {escape(default.ljust(dwidth))}  {escape(allowed)}")
        if doc:
            console.print(f"  {' ' * width}  {escape(doc)}")
    example = next(((k, s.default) for k, s in cls.params.items() if isinstance(s.default, int)
                    and not isinstance(s.default, bool)), None)
    tail = f" -p {example[0]}={example[1]}" if example else ""
    console.print(f"example: uxai explain planted-image --method {escape(method)}{escape(tail)}")


@app.command()
def info(model: str = typer.Argument(..., help=_MODEL_HELP),
         arch: Optional[str] = typer.Option(None, "--arch", help=_ARCH_HELP),
         input_shape: Optional[str] = typer.Option(None, "--input-shape", help=_SHAPE_HELP),
         device: str = typer.Option("auto", "--device", help="auto (CUDA when present), cpu, cuda:0 ...")):
    """Show a model's layers with their output shapes (the names --layer takes) and its classes."""
    from rich.markup import escape
    from rich.table import Table

    shape = parse_input_shape(input_shape)
    adapter = load_model_from_cli(model, arch=arch, input_shape=shape, device=check_device(device), progress=False)
    table = Table(title=f"{adapter.name}: input {adapter.input_shape} ({adapter.modality}) on {adapter.device}")
    for column in ("layer", "type", "output shape"):
        table.add_column(column)
    for name, kind, out_shape in adapter.layer_shapes():
        table.add_row(name, kind, str(tuple(out_shape)))
    console = _console()
    console.print(table)
    names = adapter.class_names
    if names:
        shown = ", ".join(f"{i} {c}" for i, c in enumerate(names[:12])) + (", ..." if len(names) > 12 else "")
        console.print(f"[bold]classes[/bold] ({len(names)}, --target takes an index or a name): {escape(shown)}")


def _builtin_dataset(model: str, arch: Optional[str] = None) -> Optional[str]:
    """The built-in test set that fits ``model`` (or the built-in model or architecture ``arch`` names)."""
    specs = getattr(ux.data, "BUILTIN_MODELS", {})
    datasets = ux.data.list_datasets()
    for name in (model, arch):
        if not name:
            continue
        spec = specs.get(name) or next((s for s in specs.values() if s.get("arch") == name), None) or {}
        if spec.get("dataset") in datasets:
            return spec["dataset"]
        if name in datasets:
            return name
    return None


def _dataset_names(ds, start: int, count: int, split: str) -> list[str]:
    """Names of dataset items for their figures: the dataset's own when it has them, else ``test-007``."""
    names = getattr(ds, "names", None)
    if names is None:
        names = getattr(ds, "metadata", {}).get("names")
    if isinstance(names, (list, tuple)) and len(names) == len(ds):
        return [str(n) for n in names[start:start + count]]
    return [f"{split}-{i:03d}" for i in range(start, start + count)]


def _check_out(out: Path) -> Path:
    if out.exists() and not out.is_dir():
        raise ParameterError(f"--out {str(out)!r} is a file; give a folder (it is created when missing)")
    return out


def _check_method_options(method: str, params: dict, seed: Optional[int], layer: Optional[str]):
    """The explainer class, with --seed/--layer folded into ``params`` (refused where meaningless)."""
    cls = ux.core.registry.get_explainer_class(method)
    for old, new in (getattr(cls, "aliases", None) or {}).items():  # deprecated names: warn once, use the new
        if old in params:
            if new in params:
                raise ParameterError(f"{method}: -p {old} is the old name of {new!r}; give only -p {new}=...")
            warnings.warn(f"{method}: parameter {old!r} is deprecated, use {new!r}", FutureWarning)
            params[new] = params.pop(old)
    for option, key, value in (("--seed", "seed", seed), ("--layer", "layer", layer)):
        if value is None:
            continue
        if key not in cls.params:
            takers = [m for m in ux.list_explainers() if key in ux.core.registry.get_explainer_class(m).params]
            raise ParameterError(f"{option}: {method} takes no {key}; methods that take one: {', '.join(takers)}")
        if key in params and params[key] != value:
            raise ParameterError(f"{option} {value} and -p {key}={params[key]} disagree; give the {key} once")
        params[key] = value
    ux.core.registry.validate_params(method, cls.params, params)  # fail before any model is loaded
    return cls


def _synonym_index(target, class_names):
    """A name that is one of the comma-separated synonyms of exactly one class (ImageNet's ``"tabby, tabby
    cat"``) becomes that class's index; anything else is left for the adapter to match or refuse."""
    if not isinstance(target, str) or not class_names:
        return target
    key = target.strip().lower()
    if any(c.lower() == key for c in class_names):
        return target
    hits = [i for i, c in enumerate(class_names) if key in (part.strip().lower() for part in c.split(","))]
    return hits[0] if len(hits) == 1 else target


def _input_tag(paths: list[Path]) -> str:
    stems = paths[0].stem + (f"+{len(paths) - 1}" if len(paths) > 1 else "")
    key = "\n".join(str(p.resolve()) for p in paths)
    return f"on_{stems}-{_digest(key)[:6]}"


def _target_tag(indices: list[int], class_names) -> str:
    """``target_coarse``, ``target_281+285`` when the names are long, a digest when both are."""
    def join(values):
        unique = list(dict.fromkeys(values))
        return "+".join(str(v) for v in (unique if len(unique) == 1 else values))

    for text in ([join([class_names[t] for t in indices])] if class_names else []) + [join(indices)]:
        if len(text) <= 40:
            return "target_" + text
    return "target_" + _digest(join(indices))[:8]


@app.command()
def explain(
    model: str = typer.Argument(..., help=_MODEL_HELP),
    inputs: Optional[List[Path]] = typer.Argument(None, help="image, audio, NIfTI, .npy or .pt files;"
                                                  " default: the model's built-in test set"),
    method: Optional[str] = typer.Option(None, "--method", "-m", help="explainer name (uxai list, uxai describe)"),
    variant: Optional[str] = typer.Option(None, "--variant", help="shortcut for --param variant=..."),
    param: Optional[List[str]] = typer.Option(None, "--param", "-p", help="explainer parameter NAME=VALUE (repeatable)"),
    target: Optional[List[str]] = typer.Option(None, "--target", "-t", help="class to explain: an index or a class"
                                               " name (repeat for one per input); default: the predicted class"),
    seed: Optional[int] = typer.Option(None, "--seed", help="random seed of explainers that draw noise or designs"),
    layer: Optional[str] = typer.Option(None, "--layer", help="layer of explainers that take one (uxai info MODEL)"),
    n: Optional[int] = typer.Option(None, "--n", "-n", help=f"how many built-in test inputs without INPUTS"
                                    f" [default: {DEFAULT_N}]"),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="built-in dataset to explain without INPUTS"
                                          " (default: the model's own)"),
    input_shape: Optional[str] = typer.Option(None, "--input-shape", help=_SHAPE_HELP),
    arch: Optional[str] = typer.Option(None, "--arch", help=_ARCH_HELP),
    sample_rate: Optional[float] = typer.Option(None, "--sample-rate", help="the model's audio sample rate in Hz"),
    out: Path = typer.Option(Path("uxai-out"), "--out", "-o", help="output folder (one subfolder per run setting)"),
    batch_size: Optional[str] = typer.Option(None, "--batch-size", help="samples per model call: an integer or"
                                             " auto [default: auto, probed once per model and input shape]"),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when present), cpu, cuda:0 ..."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="progress bars on a terminal"),
):
    """Explain inputs with one method; writes OUT/<model>/<method-settings>/explanation.h5 and a PNG per input."""
    start = time.perf_counter()
    # everything checkable without the model first: bad options fail in a fraction of a second
    shape = parse_input_shape(input_shape)
    chunk = _parse_batch_size(batch_size)
    check_device(device)
    _check_out(out)
    if n is not None and n < 1:
        raise ParameterError(f"--n must be at least 1 (how many built-in test inputs to explain), got {n}")
    if inputs and n is not None:
        raise ParameterError("--n picks built-in test inputs; with INPUT files every file is explained (drop --n)")
    if inputs and dataset is not None:
        raise ParameterError("give either INPUT files or --dataset, not both")
    for path in inputs or []:
        if not path.exists():
            raise InputError(f"input file {str(path)!r} does not exist (relative to {os.getcwd()})")
    method = method or _default_method()
    params = _parse_params(param)
    if variant is not None:
        if "variant" in params and params["variant"] != variant:
            raise ParameterError(f"--variant {variant} and -p variant={params['variant']} disagree; give it once")
        params["variant"] = variant
    cls = _check_method_options(method, params, seed, layer)
    targets = _parse_targets(target)
    console = _console()
    removed = clean_stale_temporaries(out, depth=2)
    if removed:
        console.print(f"removed {len(removed)} temporary file(s) left by killed runs in {out}")

    adapter = load_model_from_cli(model, arch=arch, input_shape=shape, device=device, batch_size=chunk,
                                  progress=progress, sample_rate=sample_rate)
    extras: list[str] = []
    notes: list[str] = []
    if inputs:
        from .io import load_inputs

        loaded = load_inputs(list(inputs), adapter)
        x, names, notes = loaded.x, list(loaded.names), list(loaded.notes)
        extras.append(_input_tag(list(inputs)))
    else:
        own = _builtin_dataset(model, arch)
        name = dataset or own
        if name is None:
            raise InputError(f"give INPUT files: {model!r} has no built-in dataset (or explain one with --dataset;"
                             f" built-in datasets: {', '.join(ux.data.list_datasets())})")
        ds = ux.data.load_dataset(name, split="test")
        count = DEFAULT_N if n is None else n
        if count > len(ds):
            raise ParameterError(f"--n {count} is more than the {len(ds)} inputs of {name}'s test set;"
                                 f" give --n between 1 and {len(ds)}")
        x, _ = ds[:count]
        names = _dataset_names(ds, 0, count, "test")
        if dataset is not None and dataset != own:
            extras.append(f"on_{dataset}")
        if count != DEFAULT_N:
            extras.append(f"n{count}")
    if targets is not None:  # checked (names and range) before the explainer runs; named in the folder
        targets = [_synonym_index(t, adapter.class_names) for t in targets]
        targets = adapter.check_targets(targets, adapter.check_input(x)).cpu().tolist()
        extras.insert(0, _target_tag(targets, adapter.class_names))
    explainer_config = ux.core.registry.validate_params(method, cls.params, params)
    settings = non_default_settings(cls, explainer_config, params)
    folder = out / model_folder_name(model, arch, shape, sample_rate) / run_folder_name(method, cls, settings, extras)
    result = explain_to_folder(adapter, x, names, method, params, folder, targets=targets)
    print_run_summary(console, result, adapter, method, settings, notes, time.perf_counter() - start)


#: the demo: the report on the real ImageNet model over the 7 labelled built-in photos (the first 7), then
#: on 8 items of a planted model (about 5 minutes on 2 cores; `uxai report` takes every photo)
DEMO_PLAN = ((REAL_MODEL, 7), ("planted-concepts", 8))


@app.command()
def demo(out: Path = typer.Option(Path("uxai-demo"), "--out", "-o", help="output folder"),
         limit: Optional[int] = typer.Option(None, "--limit", "-n", help="inputs per model [default: the 7 labelled"
                                             " photos, 8 planted items]"),
         model: Optional[List[str]] = typer.Option(None, "--model", help="report on these built-in models instead"
                                                   " (repeatable)"),
         progress: bool = typer.Option(True, "--progress/--no-progress", help="progress bars on a terminal")):
    """The combined report on the real ImageNet model over the built-in photos, then on a planted model."""
    from rich.markup import escape

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if limit is not None and limit < 1:
        raise ParameterError(f"--limit must be at least 1, got {limit}")
    available = ux.data.list_models()
    plan = [(m, n) for m, n in DEMO_PLAN if m in available]
    if model:
        unknown = [m for m in model if m not in available]
        if unknown:
            raise UnknownNameError(f"--model {unknown[0]!r} is not a built-in model; built-in: {', '.join(available)}")
        plan = [(m, dict(DEMO_PLAN).get(m, DEFAULT_N)) for m in model]
    _check_out(out)
    console = _console()
    start = time.perf_counter()
    done = []
    for name, count in plan:
        began = time.perf_counter()
        console.print(f"[bold]{escape(name)}[/bold]: report ...")
        try:
            adapter = load_model_from_cli(name, progress=progress)
        except UXAIError as exc:
            if name != REAL_MODEL:
                raise
            console.print(f"  skipped: {escape(_message(exc))}")
            continue
        result = ux.report(adapter, None, out=out / name, limit=limit or count,
                           progress=None if progress else False)  # bars on a terminal only
        seconds = time.perf_counter() - began
        console.print(f"  {len(result.ok_inputs)} input(s), {len(result.classes)} class concept bank(s) in"
                      f" {seconds:.0f} s -> {escape(str((out / name / 'index.html').resolve()))}")
        done.append((name, result, seconds))
    index = _demo_index(out, done)
    console.print(f"\n[bold]done[/bold] in {time.perf_counter() - start:.0f} s. Numbers: <model>/report.h5"
                  f" (ux.Report.load). [bold]open[/bold] {escape(str(index.resolve()))}")


def _demo_index(out: Path, done: list) -> Path:
    """``out/index.html``: one line per report, linking its own index."""
    import html

    rows = "".join(
        f"<li><a href=\"{html.escape(name)}/index.html\">{html.escape(name)}</a>: {len(r.ok_inputs)} input(s),"
        f" {len(r.classes)} class concept bank(s), {seconds:.0f} s</li>" for name, r, seconds in done)
    page = (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>unified-xai demo</title>"
            f"<style>body{{font-family:sans-serif;margin:2em;max-width:50em}}</style></head><body>"
            f"<h1>unified-xai demo reports</h1><p>Where each model looks, at what wavelet scale, and which concept"
            f" of the predicted class it uses, per input (unified_xai {ux.__version__}).</p><ul>{rows}</ul>"
            f"</body></html>")
    path = out / "index.html"
    with atomic_write(path, binary=False) as handle:
        handle.write(page)
    return path


# --------------------------------------------------------------------------- report
@app.command()
def report(
    model: str = typer.Argument(..., help=_MODEL_HELP),
    inputs: Optional[List[Path]] = typer.Argument(None, help="image, audio, NIfTI, .npy or .pt files, or folders;"
                                                  " default: the model's built-in test set (the built-in photos"
                                                  " for the ImageNet model)"),
    out: Path = typer.Option(Path("uxai-report"), "--out", "-o", help="report folder (report.h5, index.html)"),
    limit: Optional[int] = typer.Option(None, "--limit", "-n", help="only the first N inputs"),
    explainer: Optional[List[str]] = typer.Option(None, "--explainer", "-e", help="explainer to run (repeatable;"
                                                  " any registered name) [default: wam, sobol, sobol_wavelet]"),
    param: Optional[List[str]] = typer.Option(None, "--param", "-p", help="explainer setting EXPLAINER.NAME=VALUE"
                                              " (repeatable), e.g. wam.n_samples=32"),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="a built-in dataset to report on instead"),
    concepts: bool = typer.Option(True, "--concepts/--no-concepts", help="CRAFT concepts of the predicted classes"),
    layer: Optional[str] = typer.Option(None, "--layer", help="layer of the concepts (default: the last"
                                        " non-negative layer with a grid)"),
    n_concepts: int = typer.Option(5, "--n-concepts", help="concepts per class bank"),
    maco: int = typer.Option(1, "--maco", help="MACO images of the top N concepts of each class (images only)"),
    maco_steps: int = typer.Option(64, "--maco-steps", help="optimisation steps of each MACO image"),
    faithfulness: bool = typer.Option(False, "--faithfulness", help="also Deletion, Insertion, µ-Fidelity of every"
                                      " where map"),
    seed: int = typer.Option(0, "--seed", help="seed of every random draw"),
    input_shape: Optional[str] = typer.Option(None, "--input-shape", help=_SHAPE_HELP),
    arch: Optional[str] = typer.Option(None, "--arch", help=_ARCH_HELP),
    sample_rate: Optional[float] = typer.Option(None, "--sample-rate", help="the model's audio sample rate in Hz"),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when present), cpu, cuda:0 ..."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="progress bars on a terminal"),
):
    """Where + what scale + which concept for every input: report.h5 and a static site (index.html)."""
    from rich.markup import escape

    from .report.run import DEFAULT_EXPLAINERS, _check_explainers, _check_out

    start = time.perf_counter()
    shape = parse_input_shape(input_shape)
    check_device(device)
    if limit is not None and limit < 1:
        raise ParameterError(f"--limit must be at least 1 (the first N inputs), got {limit}")
    if inputs and dataset is not None:
        raise ParameterError("give either INPUT files or --dataset, not both")
    for path in inputs or []:
        if not path.exists():
            raise InputError(f"input {str(path)!r} does not exist (relative to {os.getcwd()})")
    names = list(explainer or DEFAULT_EXPLAINERS)
    params: dict[str, dict] = {}
    for item in param or []:
        head, sep, _ = item.partition("=")
        if not sep or "." not in head:
            raise ParameterError(f"--param {item!r}: write EXPLAINER.NAME=VALUE, e.g. wam.n_samples=32")
        which, name = head.split(".", 1)
        params.setdefault(which, {}).update(_parse_params([f"{name}={item.partition('=')[2]}"]))
    _check_explainers(names, params)  # unknown names and bad settings fail before the model loads
    _check_out(out)
    adapter = load_model_from_cli(model, arch=arch, input_shape=shape, device=device, progress=progress,
                                  sample_rate=sample_rate)
    console = _console()
    given = dataset if dataset is not None else ([str(p) for p in inputs] if inputs else None)
    console.print(f"[bold]{escape(adapter.name)}[/bold]: report of {escape(', '.join(names))}"
                  + (" + concepts" if concepts else "") + f" -> {escape(str(out))}")
    result = ux.report(adapter, given, explainers=names, concepts=concepts, out=out, limit=limit,
                       explainer_params=params, concept_layer=layer, n_concepts=n_concepts, maco=maco,
                       maco_steps=maco_steps, faithfulness=faithfulness, seed=seed,
                       progress=None if progress else False)  # bars on a terminal only
    ok = result.ok_inputs
    failed = [r for r in result.inputs if not r.ok]
    console.print(f"{len(ok)} input(s) explained" + (f" ({result.reused} reused from an earlier run)"
                                                      if result.reused else "")
                  + (f", {len(failed)} could not be read (listed in the index)" if failed else "")
                  + f", {len(result.classes)} class concept bank(s), in {time.perf_counter() - start:.0f} s")
    for r in failed:
        console.print(f"  failed: {escape(r.name)}: {escape(r.error)}")
    console.print(f"numbers: {escape(str((out / 'report.h5').resolve()))}  (ux.Report.load)")
    console.print(f"[bold]open[/bold] {escape(str((out / 'index.html').resolve()))}")


# --------------------------------------------------------------------------- concepts (CRAFT banks)
from .concepts.scales import (  # noqa: E402  (shared with ux.report)
    CONCEPT_LEVELS, CONCEPT_SCALE_PROFILE, CONCEPT_WAVELET, concept_layers as _concept_layers,
    concept_scale_profiles, default_concept_layer as _concept_layer,
)


def _parse_classes(raw: List[str], adapter) -> list[int]:
    """``--class`` values (indices, names or ImageNet synonyms, comma lists of indices) as class indices."""
    n_classes = adapter.num_classes()
    indices: list[int] = []
    for value in _parse_targets(raw) or []:
        value = _synonym_index(value, adapter.class_names)
        try:
            index = adapter.class_index(value, n_classes)
        except InputError as exc:
            raise InputError(f"--class {value!r}: {_message(exc).replace('target ', 'class ')}") from None
        if index not in indices:
            indices.append(index)
    return indices


def _class_label(adapter, class_id: int) -> str:
    names = adapter.class_names
    return f"{class_id} {names[class_id]!r}" if names and class_id < len(names) else str(class_id)


def _class_slugs(adapter, class_ids: list[int]) -> dict[int, str]:
    """File stems of the class figures: the class name (first synonym), with the index when names collide."""
    from .plotting import _short_class

    names = adapter.class_names
    if not names:
        return {c: f"class-{c}" for c in class_ids}
    slugs = [_slug(_short_class(str(n)).split(",")[0]) for n in names]
    return {c: slugs[c] if slugs.count(slugs[c]) == 1 else f"{c}-{slugs[c]}" for c in class_ids}


def _folder_files(folder: Path, adapter) -> tuple[list[Path], list[str]]:
    """The files of ``folder`` this model reads (its modality's kind and tensors), and the names skipped."""
    from . import io as uxio

    kinds = {1: uxio.AUDIO_SUFFIXES, 2: uxio.IMAGE_SUFFIXES, 3: uxio.VOLUME_SUFFIXES}
    accepted = kinds.get(adapter.spatial_ndim, ()) + uxio.TENSOR_SUFFIXES
    taken, skipped = [], []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        name = path.name.lower()
        (taken if any(name.endswith(suffix) for suffix in accepted) else skipped).append(path)
    if not taken:
        found = f"; it holds {', '.join(p.name for p in skipped[:6])}{' ...' if len(skipped) > 6 else ''}" \
            if skipped else " (it is empty)"
        article = "an" if adapter.modality[:1] in "aeiou" else "a"
        raise InputError(f"--images {str(folder)!r} holds no file {article} {adapter.modality} model reads"
                         f" ({', '.join(accepted)}){found}")
    return taken, [p.name for p in skipped]


def _dataset_class_images(ds, class_id: int, max_images: int) -> tuple[Any, list[str]]:
    """Items of ``class_id`` (its target, or one of its accepted targets such as the photos'), up to ``max_images``."""
    import torch

    accepted = getattr(ds, "metadata", {}).get("accepted_targets")
    targets = ds.targets.tolist()
    hits = [i for i, t in enumerate(targets)
            if t == class_id or (accepted is not None and class_id in (accepted[i] or []))][:max_images]
    names = _dataset_names(ds, 0, len(ds), ds.split if hasattr(ds, "split") else "test")
    return (ds.inputs[torch.tensor(hits, dtype=torch.long)] if hits else None), [names[i] for i in hits]


def _profiles_path(bank_path: Path, levels: int, samples: int) -> Path:
    return bank_path.with_name(
        f"{bank_path.stem}.scales-{CONCEPT_WAVELET}{levels}-wam{samples}-{CONCEPT_SCALE_PROFILE}.json")


def _read_profiles(path: Path, bank) -> Optional[tuple]:
    """Stored scale profiles of ``bank`` (profiles, level names, counts), or None when missing or unreadable."""
    import json

    import torch

    try:
        stored = json.loads(path.read_text())
        profiles = torch.tensor(stored["profiles"], dtype=torch.float32)
        if stored.get("bank_key") != bank.key or profiles.shape[0] != bank.n_concepts:
            return None
        return profiles, list(stored["level_names"]), [int(c) for c in stored["n_expressing"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None


@app.command()
def concepts(
    model: str = typer.Argument(..., help=_MODEL_HELP),
    class_: List[str] = typer.Option(..., "--class", "-c", help="class whose concepts to extract: an index or a"
                                     " class name (repeat for several classes)"),
    layer: Optional[str] = typer.Option(None, "--layer", help="layer to factorise (non-negative activations);"
                                        " default: the last non-negative layer with a spatial grid"),
    images: Optional[Path] = typer.Option(None, "--images", help="folder of images (or audio, volumes, .npy/.pt) of"
                                          " the class; default: the model's built-in dataset"),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="built-in dataset whose items of the class are"
                                          " used (default: the model's own)"),
    split: str = typer.Option("test", "--split", help="split of the built-in dataset (train or test)"),
    n_concepts: int = typer.Option(5, "--n-concepts", "-k", help="concepts per class (the NMF rank)"),
    patch_size: Optional[int] = typer.Option(None, "--patch-size", help="crop side in pixels (samples, voxels);"
                                             " default 0.3 x the input size"),
    stride: Optional[int] = typer.Option(None, "--stride", help="step between crops; default 0.8 x the patch size"),
    max_images: int = typer.Option(64, "--max-images", help="at most this many images of the class"),
    seed: int = typer.Option(0, "--seed", help="seed of the NMF and of the Sobol design"),
    wam_samples: int = typer.Option(16, "--wam-samples", help="WAM path points of each concept's scale profile"),
    scales: bool = typer.Option(True, "--scales/--no-scales", help="compute each concept's wavelet scale profile"),
    maco: int = typer.Option(0, "--maco", help="MACO images of the N most important concepts (image models), cached"
                             " beside the bank and drawn in the figure"),
    maco_steps: int = typer.Option(128, "--maco-steps", help="MACO steps per concept image"),
    input_shape: Optional[str] = typer.Option(None, "--input-shape", help=_SHAPE_HELP),
    arch: Optional[str] = typer.Option(None, "--arch", help=_ARCH_HELP),
    sample_rate: Optional[float] = typer.Option(None, "--sample-rate", help="the model's audio sample rate in Hz"),
    out: Path = typer.Option(Path("uxai-out"), "--out", "-o", help="output folder (OUT/<model>/concepts/)"),
    batch_size: Optional[str] = typer.Option(None, "--batch-size", help="samples per model call: an integer or"
                                             " auto (the default: probed once per model and input shape)"),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when present), cpu, cuda:0 ..."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="progress bars on a terminal"),
):
    """Extract CRAFT concepts of classes; writes OUT/<model>/concepts/banks/*.h5 and one PNG per class."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from rich.markup import escape

    from .concepts import Craft
    from .concepts.bank import bank_filename
    from .plotting import plot_concept_bank

    start = time.perf_counter()
    shape = parse_input_shape(input_shape)
    chunk = _parse_batch_size(batch_size)
    check_device(device)
    _check_out(out)
    if maco < 0:
        raise ParameterError(f"--maco must be 0 (no MACO images) or more, got {maco}")
    for option, value in (("--n-concepts", n_concepts), ("--max-images", max_images), ("--wam-samples", wam_samples),
                          ("--patch-size", patch_size), ("--stride", stride), ("--maco-steps", maco_steps)):
        if value is not None and value < 1:
            raise ParameterError(f"{option} must be at least 1, got {value}")
    if images is not None and dataset is not None:
        raise ParameterError("give either --images DIR or --dataset NAME, not both")
    if images is not None:
        if not images.exists():
            raise InputError(f"--images folder {str(images)!r} does not exist (relative to {os.getcwd()})")
        if not images.is_dir():
            raise InputError(f"--images takes a folder of the class's images, but {str(images)!r} is a file")
        if len(class_) > 1:
            raise ParameterError(f"--images holds the images of one class, but {len(class_)} --class were given;"
                                 f" run once per class with its own folder")
    console = _console()
    removed = clean_stale_temporaries(out, depth=3)
    if removed:
        console.print(f"removed {len(removed)} temporary file(s) left by killed runs in {out}")

    adapter = load_model_from_cli(model, arch=arch, input_shape=shape, device=device, batch_size=chunk,
                                  progress=progress, sample_rate=sample_rate)
    class_ids = _parse_classes(class_, adapter)
    if images is not None and len(class_ids) > 1:
        raise ParameterError(f"--images holds the images of one class, but {len(class_ids)} classes were given;"
                             f" run once per class with its own folder")
    chosen, why = _concept_layer(adapter, layer)
    if maco and adapter.spatial_ndim != 2:
        raise ParameterError(f"--maco draws images, but {adapter.name} is a {adapter.modality} model; drop --maco")
    folder = out / model_folder_name(model, arch, shape, sample_rate) / "concepts"
    bank_dir = folder / "banks"
    sources: dict[int, tuple[Any, str]] = {}
    notes: list[str] = []
    if images is not None:
        from .io import load_inputs

        files, skipped = _folder_files(images, adapter)
        total = len(files)
        loaded = load_inputs(files[:max_images], adapter)
        x = loaded.x[:max_images]
        what = f"{x.shape[0]} input(s) from {min(total, max_images)} file(s) of {images}" + \
            (f" (the first {max_images} of {total}, --max-images)" if total > max_images
             or len(loaded) > max_images else "")
        if skipped:
            more = " ..." if len(skipped) > 4 else ""
            what += f"; skipped {len(skipped)} other file(s): {', '.join(skipped[:4])}{more}"
        notes = list(loaded.notes)
        sources[class_ids[0]] = (x, what)
    else:
        name = dataset or _builtin_dataset(model, arch)
        if name is None:
            raise InputError(f"give --images DIR: {model!r} has no built-in dataset (or use --dataset; built-in"
                             f" datasets: {', '.join(ux.data.list_datasets())})")
        ds = ux.data.load_dataset(name, split=split)
        for class_id in class_ids:
            x, names = _dataset_class_images(ds, class_id, max_images)
            if x is None:
                accepted = getattr(ds, "metadata", {}).get("accepted_targets") or []
                present = sorted({int(t) for t in ds.targets.tolist() if int(t) >= 0}
                                 | {int(t) for row in accepted for t in (row or [])})
                listing = ", ".join(_class_label(adapter, c) for c in present[:12]) + (" ..." if len(present) > 12
                                                                                       else "")
                raise InputError(f"dataset {name!r} ({split} split) has no item of class"
                                 f" {_class_label(adapter, class_id)}; its classes: {listing}; give --images DIR"
                                 f" with images of the class")
            try:
                x = adapter.check_input(x)
            except InputError as exc:
                raise InputError(f"dataset {name!r} does not fit {adapter.name}: {_message(exc)}") from None
            sources[class_id] = (x, f"{len(names)} item(s) of {name} ({split})"
                                    + (f", the first {max_images} (--max-images)" if len(names) == max_images else ""))
    sizes = tuple(int(v) for v in next(iter(sources.values()))[0].shape[2:])
    if patch_size is not None and patch_size > min(sizes):
        raise ParameterError(f"--patch-size {patch_size} is larger than the inputs {sizes}; give at most {min(sizes)}")
    console.print(f"[bold]{escape(adapter.name)}[/bold]: layer {escape(repr(chosen))} ({escape(why)})")
    for note in notes:
        console.print(f"conversion: {escape(note)}")
    levels = 0
    if scales:
        from .wavelets import max_levels

        levels = min(CONCEPT_LEVELS, max_levels(sizes, CONCEPT_WAVELET))
        if levels < 1:
            console.print(f"note: inputs of size {sizes} are too small for a wavelet level; no scale profiles")
    slugs = _class_slugs(adapter, class_ids)
    chunk_int = chunk if isinstance(chunk, int) else None
    for class_id in class_ids:
        x, what = sources[class_id]
        began = time.perf_counter()
        craft = Craft(adapter, chosen, n_concepts, patch_size=patch_size, stride=stride, seed=seed,
                      batch_size=chunk_int, progress=progress)
        key = craft.key(x, class_id)
        bank_path = bank_dir / bank_filename(adapter.name, chosen, class_id, key)
        reused = bank_path.exists()
        craft.fit(x, class_id, bank_dir=bank_dir)
        bank = craft.bank_
        fitted_in = time.perf_counter() - began
        patch = tuple(int(p) for p in bank.top_crop_images_.shape[3:])
        mode = bank.config.get("crop_fit", "auto")
        mode = ("tile" if adapter.spatial_ndim == 1 else "resize") if mode == "auto" else mode
        n_crops = int(bank.crop_boxes_.shape[0])
        unit = {1: "samples", 2: "px", 3: "voxels"}.get(adapter.spatial_ndim, "")
        verb = "reused bank" if reused else "fitted bank"
        console.print(f"[bold]class {escape(_class_label(adapter, class_id))}[/bold]: {verb} of {bank.n_concepts}"
                      f" concepts in {fitted_in:.1f} s; {escape(what)}; {n_crops} crops of"
                      f" {'x'.join(map(str, patch))} {unit} ({'tiled' if mode == 'tile' else 'resized'} to the input"
                      f" size)"
                      + ("; fitted earlier with the same model, layer, class, settings and images" if reused else ""))
        profiles, level_names, counts = None, None, []
        if levels >= 1:
            cache = _profiles_path(bank_path, levels, wam_samples)
            began = time.perf_counter()
            stored = _read_profiles(cache, bank)
            if stored is not None:
                profiles, level_names, counts = stored
                console.print(f"  scale profiles: reused ({escape(str(cache.name))})")
            else:
                profiles, level_names, counts = concept_scale_profiles(adapter, craft, x, class_id, levels,
                                                                       wam_samples, chunk_int)
                with atomic_write(cache, binary=False) as handle:
                    json.dump({"bank_key": bank.key, "wavelet": CONCEPT_WAVELET, "levels": levels,
                               "wam_samples": wam_samples, "n_images": int(x.shape[0]), "n_expressing": counts,
                               "level_names": level_names, "profiles": profiles.tolist()}, handle)
                console.print(f"  scale profiles: wam (integrated, {wam_samples} samples, {levels} {CONCEPT_WAVELET}"
                              f" levels) on {x.shape[0]} input(s) per concept in {time.perf_counter() - began:.1f} s")
        for k in range(bank.n_concepts):
            line = f"  concept {k}  importance {float(bank.importances_[k]):.3f}"
            if profiles is not None:
                total = float(profiles[k].abs().sum())
                line += "  scales: " + (", ".join(f"{n.split(' (')[0]} {100 * float(v) / total:.0f} %"
                                                  for n, v in zip(level_names, profiles[k]))
                                        + f" (in the {counts[k]} of {x.shape[0]} inputs expressing it)" if total > 0
                                        else "none (the concept's coefficient is 0 in these images: no gradient)")
            console.print(escape(line))
        maco_results = []
        if maco:
            from .featviz import concept_images

            began = time.perf_counter()
            maco_results = concept_images(adapter, bank, min(maco, bank.n_concepts), bank_path=bank_path,
                                          steps=maco_steps, progress=progress, batch_size=chunk_int)
            console.print(f"  MACO images of {len(maco_results)} concept(s) ({maco_steps} steps) in"
                          f" {time.perf_counter() - began:.1f} s: {escape(str(bank_path.with_suffix('.maco')))}")
        figure = folder / f"{slugs[class_id]}.png"
        folder.mkdir(parents=True, exist_ok=True)
        fig = plot_concept_bank(bank, profiles, level_names, sample_rate=adapter.sample_rate, maco_images=maco_results)
        try:
            with atomic_write(figure) as handle:
                fig.savefig(handle, format="png", dpi=100)
        finally:
            plt.close(fig)
        console.print(f"  bank:   {escape(str(bank_path))}")
        console.print(f"  figure: {escape(str(figure))}")
    console.print(f"[bold]done[/bold] in {time.perf_counter() - start:.1f} s. Explain inputs with these banks: uxai"
                  f" explain {escape(model)} -m craft -p bank={escape(str(bank_dir))} -p layer={escape(chosen)}"
                  f" --target {class_ids[0]}")


def _parse_concept(raw: str, adapter) -> tuple[int, int]:
    """``--concept CLASS:ID`` -> (class index, concept index); the class by index or name."""
    head, sep, tail = raw.rpartition(":")
    if not sep or not head or not tail.strip().isdigit():
        raise ParameterError(f"--concept takes CLASS:ID, a class (index or name) and a concept index (0 = the most"
                             f" important), e.g. --concept 285:0 or --concept 'Egyptian cat:1'; got {raw!r}")
    return _parse_classes([head], adapter)[0], int(tail)


def _visualize_objective(adapter, logit, layer, channel, position):
    """The objective of ``uxai visualize`` from --logit or --layer/--channel[/--position], and a file stem."""
    from .core import hooks

    if logit is not None:
        class_id = _parse_classes([logit], adapter)[0]
        return ux.objectives.Logit(class_id), f"logit-{_class_slugs(adapter, [class_id])[class_id]}"
    hooks.get_layer(adapter.model, layer)  # a wrong name lists the valid ones
    if position is None:
        return ux.objectives.Channel(layer, channel), f"{_slug(layer)}-channel{channel}"
    try:
        where = tuple(int(v) for v in position.split(","))
    except ValueError:
        raise ParameterError(f"--position takes grid coordinates such as 3,4 (row, column), got {position!r}") from None
    return ux.objectives.Neuron(layer, channel, where), f"{_slug(layer)}-neuron{channel}-at-{'-'.join(map(str, where))}"


@app.command()
def visualize(
    model: str = typer.Argument(..., help=_MODEL_HELP),
    logit: Optional[str] = typer.Option(None, "--logit", help="visualise a class logit: an index or a class name"),
    layer: Optional[str] = typer.Option(None, "--layer", help="with --channel: visualise a channel of this layer"),
    channel: Optional[int] = typer.Option(None, "--channel", help="channel of --layer"),
    position: Optional[str] = typer.Option(None, "--position", help="with --layer/--channel: one neuron at these grid"
                                           " coordinates (e.g. 3,4) instead of the channel mean"),
    concept: Optional[str] = typer.Option(None, "--concept", help="CLASS:ID, a concept of a bank made by `uxai"
                                          " concepts` (ID 0 = the most important)"),
    banks: Optional[Path] = typer.Option(None, "--banks", help="bank folder for --concept (default: OUT/<model>/"
                                         "concepts/banks, where `uxai concepts` writes them)"),
    steps: int = typer.Option(128, "--steps", help="optimisation steps"),
    crops: int = typer.Option(4, "--crops", help="random views per step"),
    image_size: Optional[int] = typer.Option(None, "--image-size", help="side of the image (default: the model's"
                                             " input size)"),
    spectrum: Optional[Path] = typer.Option(None, "--spectrum", help="magnitude spectrum file (.npz from"
                                            " scripts/estimate_spectrum.py); default: the shipped natural photos"),
    seed: int = typer.Option(0, "--seed", help="seed of the initial phase, boxes and noise"),
    input_shape: Optional[str] = typer.Option(None, "--input-shape", help=_SHAPE_HELP),
    arch: Optional[str] = typer.Option(None, "--arch", help=_ARCH_HELP),
    out: Path = typer.Option(Path("uxai-out"), "--out", "-o", help="output folder (OUT/<model>/visualize/)"),
    batch_size: Optional[str] = typer.Option(None, "--batch-size", help="views per model call: an integer or auto"),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when present), cpu, cuda:0 ..."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="progress bars on a terminal"),
):
    """Feature visualisation (MACO) of a logit, a channel or neuron, or a CRAFT concept; writes PNGs under OUT."""
    from rich.markup import escape

    from .concepts import class_banks
    from .featviz import concept_images, maco

    start = time.perf_counter()
    shape = parse_input_shape(input_shape)
    chunk = _parse_batch_size(batch_size)
    check_device(device)
    _check_out(out)
    chosen = [name for name, given in (("--logit", logit is not None), ("--layer/--channel", layer is not None
                                       or channel is not None), ("--concept", concept is not None)) if given]
    if len(chosen) != 1:
        raise ParameterError("give exactly one of --logit CLASS, --layer L --channel K, or --concept CLASS:ID"
                             + (f" (got {' and '.join(chosen)})" if chosen else ""))
    if concept is None and logit is None and (layer is None or channel is None):
        raise ParameterError("--layer and --channel go together: --layer L --channel K (`uxai info MODEL` lists the"
                             " layers and their channels)")
    if position is not None and layer is None:
        raise ParameterError("--position goes with --layer and --channel")
    if steps < 1 or crops < 1:
        raise ParameterError(f"--steps and --crops must be at least 1, got {steps} and {crops}")
    if spectrum is not None and not spectrum.is_file():
        raise InputError(f"--spectrum {str(spectrum)!r} is not a file; write one with scripts/estimate_spectrum.py")
    console = _console()
    adapter = load_model_from_cli(model, arch=arch, input_shape=shape, device=device, batch_size=chunk,
                                  progress=progress)
    folder = out / model_folder_name(model, arch, shape) / "visualize"
    settings = {"steps": steps, "crops": crops, "image_size": image_size, "seed": seed,
                "spectrum": None if spectrum is None else str(spectrum), "progress": progress,
                "batch_size": chunk if isinstance(chunk, int) else None}
    if concept is not None:
        class_id, k = _parse_concept(concept, adapter)
        bank_dir = banks or out / model_folder_name(model, arch, shape) / "concepts" / "banks"
        found = class_banks(bank_dir, class_id, model_id=adapter.name)
        if not found:
            raise InputError(f"no concept bank of class {_class_label(adapter, class_id)} for {adapter.name} in"
                             f" {str(bank_dir)!r}; build one first: uxai concepts {model} --class {class_id}"
                             f" --out {out}" + ("" if banks is None else " (then give its banks folder)"))
        bank_path, bank = found[0]
        if not 0 <= k < bank.n_concepts:
            raise ParameterError(f"--concept {concept}: the bank has concepts 0 to {bank.n_concepts - 1}")
        began = time.perf_counter()
        (result,) = concept_images(adapter, bank, [k], bank_path=bank_path, **settings)
        stem = folder / f"concept-{_class_slugs(adapter, [class_id])[class_id]}-{k}"
        what = (f"concept {k} of class {_class_label(adapter, class_id)} (importance"
                f" {float(bank.importances_[k]):.3f}, layer {bank.layer}; bank {bank_path.name}"
                + (f", {len(found)} banks of this class: the newest" if len(found) > 1 else "") + ")")
    else:
        objective, name = _visualize_objective(adapter, logit, layer, channel, position)
        began = time.perf_counter()
        result = maco(adapter, objective, **settings)
        stem = folder / name
        what = objective.describe()
    image_path, alpha_path = result.save(stem)
    result.save_npz(stem.with_suffix(".npz"))
    first, last = float(result.history[0]), float(result.history[-1])
    console.print(f"[bold]{escape(adapter.name)}[/bold]: MACO of {escape(what)}: {result.config['steps']} steps x"
                  f" {result.config['crops']} views in {time.perf_counter() - began:.1f} s; objective on the views"
                  f" {first:.3g} -> {last:.3g}")
    console.print(f"  image:              {escape(str(image_path))}")
    console.print(f"  with transparency:  {escape(str(alpha_path))}")
    console.print(f"  arrays (.npz):      {escape(str(stem.with_suffix('.npz')))}  (ux.featviz.MacoResult.load)")
    console.print(f"[bold]done[/bold] in {time.perf_counter() - start:.1f} s")


# --------------------------------------------------------------------------- bench (speed over the floors)
@app.command()
def bench(
    quick: bool = typer.Option(False, "--quick", help="every benchmark on a small built-in model (planted-image)"
                               " with few samples: well under a minute"),
    only: Optional[List[str]] = typer.Option(None, "--only", help="run only this benchmark (repeatable, or"
                                             " comma-separated); an unknown name lists them"),
    repeats: int = typer.Option(3, "--repeats", help="interleaved (method, floor) pairs per row"),
    model: Optional[str] = typer.Option(None, "--model", help="model of every row but nmf: " + _MODEL_HELP
                                        + " [default: timm:resnet18 with random weights; planted-image with --quick]"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="markdown file to write [default: docs/bench.md for"
                                       " a full run from the repository, else uxai-out/bench.md]"),
    batch_size: Optional[str] = typer.Option(None, "--batch-size", help="rows per model call, for the methods and"
                                             " their floors: an integer or auto [default: 16]"),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch (and BLAS) threads [default: torch's own]"),
):
    """Every method's speed over the bare model passes it needs; prints a table and saves it as markdown."""
    import shlex

    from rich.markup import escape

    from . import bench as benchmarks

    names = benchmarks.select(only)  # everything checkable before the model is loaded
    benchmarks.check_options(repeats, threads)
    chunk = _parse_batch_size(batch_size)
    every = names == list(benchmarks.BENCHMARKS)
    path = out or benchmarks.default_out(quick, every, model)
    if path.is_dir():
        raise ParameterError(f"--out {str(path)!r} is a folder; give the markdown file to write, e.g. {path}/bench.md")
    blocking = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise ParameterError(f"--out {str(path)!r}: {str(blocking)!r} is a file, not a folder")
    command = ["uxai", "bench"] + (["--quick"] if quick else []) + [a for n in ([] if every else names)
                                                                     for a in ("--only", n)]
    for option, value, default in (("--repeats", repeats, 3), ("--model", model, None),
                                   ("--batch-size", batch_size, None), ("--threads", threads, None),
                                   ("--out", out, None)):
        if value != default:
            command += [option, str(value)]
    console = _console()

    def show(row) -> None:
        target = f" (target {row.target_text}: {'met' if row.met else 'missed'})" if row.target is not None else ""
        console.print(escape(f"{row.method}, {row.setting}: {benchmarks._seconds(row.method_s)} over"
                             f" {benchmarks._seconds(row.floor_s)} = {row.ratio_text}{target}"))

    report = benchmarks.run(quick=quick, only=names, repeats=repeats, model=model, batch_size=chunk, threads=threads,
                            on_row=show, on_note=lambda text: console.print(escape(text)))
    from rich.console import Console

    wide = Console(soft_wrap=False, highlight=False, width=max(console.width, 150))  # a pipe is 80 wide
    wide.print(benchmarks.rich_table(report))
    for line in benchmarks.header(report):
        console.print(escape(line))
    written = benchmarks.save(report, path, shlex.join(command))
    console.print(f"[bold]written:[/bold] {escape(str(written))}")


if __name__ == "__main__":  # pragma: no cover
    main()
