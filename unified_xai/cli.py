"""The ``uxai`` command line."""
from __future__ import annotations

import ast
import os
from pathlib import Path
from typing import List, Optional

import typer

app = typer.Typer(help="unified-xai: where a classifier looks, at what wavelet scale, which concept.",
                  no_args_is_help=True, add_completion=False)

# the best registered method first; the demo and `explain` default to the first available
PREFERRED_METHODS = ("wam", "saliency")


def _console():
    from rich.console import Console

    return Console(soft_wrap=True)  # paths must stay copyable, never wrapped


def _default_method() -> str:
    import unified_xai as ux

    names = ux.list_explainers()
    return next(m for m in PREFERRED_METHODS if m in names)


def _parse_params(items: List[str]) -> dict:
    params = {}
    for item in items or []:
        if "=" not in item:
            raise typer.BadParameter(f"--param takes NAME=VALUE, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            params[key] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            params[key] = raw  # a bare word such as smoothgrad
    return params


@app.command("list")
def list_command():
    """List registered explainers and built-in models and datasets."""
    import unified_xai as ux

    console = _console()
    console.print("[bold]explainers:[/bold] " + ", ".join(ux.list_explainers()))
    console.print("[bold]built-in models:[/bold] " + ", ".join(ux.data.list_models()))
    console.print("[bold]built-in datasets:[/bold] " + ", ".join(ux.data.list_datasets()))
    console.print("models also load as timm:<name>, a checkpoint path (.pt) or module:factory")


@app.command()
def info(model: str = typer.Argument(..., help="built-in name, timm:<name>, checkpoint path or module:factory")):
    """Show a model's layers with their output shapes (the names every layer option takes)."""
    import unified_xai as ux
    from rich.table import Table

    adapter = ux.data.load_model(model, progress=False)
    table = Table(title=f"{adapter.name}: input {adapter.input_shape} ({adapter.modality}) on {adapter.device}")
    for column in ("layer", "type", "output shape"):
        table.add_column(column)
    for name, kind, shape in adapter.layer_shapes():
        table.add_row(name, kind, str(tuple(shape)))
    _console().print(table)


def _explain_and_write(adapter, x, method: str, params: dict, out: Path, stem: str, targets=None) -> tuple[Path, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import unified_xai as ux

    explainer = ux.create(method, adapter, **params)
    explanation = explainer.explain(x, targets=targets)
    explanation.inputs = adapter.check_input(x).detach()
    out.mkdir(parents=True, exist_ok=True)
    h5_path = out / f"{stem}.h5"
    explanation.save(h5_path)
    png_path = out / f"{stem}.png"
    figures = [explanation.plot(index=i) for i in range(len(explanation))]
    _save_figures(figures, png_path)
    for fig in figures:
        plt.close(fig)
    return h5_path, png_path


def _save_figures(figures, path: Path) -> None:
    """Stack per-item figures vertically into one PNG (written atomically)."""
    import io

    import numpy as np
    from PIL import Image

    from .core.storage import atomic_write

    images = []
    for fig in figures:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=80)
        buffer.seek(0)
        images.append(np.asarray(Image.open(buffer).convert("RGB")))
    width = max(i.shape[1] for i in images)
    padded = [np.pad(i, ((0, 0), (0, width - i.shape[1]), (0, 0)), constant_values=255) for i in images]
    with atomic_write(path) as handle:
        Image.fromarray(np.concatenate(padded)).save(handle, format="PNG")


@app.command()
def explain(
    model: str = typer.Argument(..., help="built-in name, timm:<name>, checkpoint path or module:factory"),
    inputs: Optional[List[Path]] = typer.Argument(None, help="image, wav, .npy or .pt files; default: the model's built-in test set"),
    method: Optional[str] = typer.Option(None, "--method", "-m", help="explainer name (see `uxai list`)"),
    variant: Optional[str] = typer.Option(None, help="shortcut for --param variant=..."),
    param: Optional[List[str]] = typer.Option(None, "--param", "-p", help="explainer parameter NAME=VALUE (repeatable)"),
    target: Optional[List[int]] = typer.Option(None, "--target", "-t", help="class to explain (default: predicted)"),
    n: int = typer.Option(4, help="how many built-in test inputs when no INPUTS are given"),
    out: Path = typer.Option(Path("uxai-out"), help="output folder"),
    batch_size: int = typer.Option(16, help="perturbed samples per model call"),
    device: str = typer.Option("auto", help="auto (CUDA when present), cpu, cuda:0 ..."),
    progress: bool = typer.Option(True, help="progress bars on a terminal"),
):
    """Explain inputs with one method; writes the Explanation (HDF5) and a figure (PNG)."""
    import unified_xai as ux
    from .io import load_inputs

    adapter = ux.data.load_model(model, device=device, batch_size=batch_size, progress=None if progress else False)
    if inputs:
        x = load_inputs(inputs, adapter.input_shape)
        stem_base = inputs[0].stem if len(inputs) == 1 else f"{inputs[0].stem}+{len(inputs) - 1}"
    else:
        if model not in ux.data.list_datasets():
            raise typer.BadParameter(f"give INPUTS files: {model!r} has no built-in dataset")
        x, _ = ux.data.load_dataset(model, split="test")[:n]
        stem_base = f"{model}-test"
    method = method or _default_method()
    params = _parse_params(param)
    if variant is not None:
        params["variant"] = variant
    h5_path, png_path = _explain_and_write(adapter, x, method, params, out, f"{stem_base}-{method}", targets=target or None)
    console = _console()
    console.print(f"explained {x.shape[0]} input(s) of {adapter.name} with {method}")
    console.print(f"explanation: {h5_path}\nfigure:      {png_path}")


@app.command()
def demo(out: Path = typer.Option(Path("uxai-demo"), help="output folder"),
         n: int = typer.Option(4, help="test inputs per built-in model"),
         method: Optional[str] = typer.Option(None, help="explainer (default: the best registered one)")):
    """Explain a few built-in test inputs of every built-in model with the default method."""
    import unified_xai as ux

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    method = method or _default_method()
    console = _console()
    written = []
    for name in ux.data.list_models():
        adapter = ux.data.load_model(name, progress=False)
        x, y = ux.data.load_dataset(name, split="test")[:n]
        h5_path, png_path = _explain_and_write(adapter, x, method, {}, out, f"{name}-{method}")
        accuracy = (adapter.predict(adapter.check_input(x)).argmax(1).cpu() == y).float().mean().item()
        console.print(f"{name:16s} {method}: {x.shape[0]} inputs (model right on {accuracy:.0%}) -> {png_path}")
        written.append(h5_path)
    console.print(f"\n[bold]done.[/bold] Explanations (HDF5) and figures (PNG) are in {out.resolve()}/")
    console.print("reopen one with: python -c \"import unified_xai as ux; e = ux.Explanation.load('"
                  f"{written[0]}'); print(e.method, e.where.shape)\"")


def main():  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
