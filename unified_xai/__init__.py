"""unified-xai: where a classifier looks, at what wavelet scale, and which concept it uses.

>>> import unified_xai as ux
>>> adapter = ux.data.load_model("digits")
>>> x, y = ux.data.load_dataset("digits", split="test")[:4]
>>> explanation = ux.create("saliency", adapter).explain(x)
"""
from . import data, metrics, objectives, sampling, wavelets
from .core import (
    CheckpointError, Explanation, InputError, LayerError, ModelAdapter, Param, ParameterError, RegistrationError, Split,
    SplitError, UnknownNameError, UXAIError, create, list_explainers, register_explainer,
)
from . import concepts  # noqa: E402
from . import featviz  # noqa: E402
from . import explainers  # noqa: E402  (registers the built-in explainers)
from .report import Report, report  # noqa: E402  (ux.report is the function; the package is unified_xai.report)

from ._version import __version__  # noqa: E402
__all__ = [
    "CheckpointError", "Explanation", "InputError", "LayerError", "ModelAdapter", "Param", "ParameterError",
    "RegistrationError", "Report", "Split", "SplitError", "UXAIError", "UnknownNameError", "concepts", "explainers", "create", "featviz", "data", "list_explainers", "metrics", "objectives", "register_explainer", "report", "sampling", "wavelets",
]
