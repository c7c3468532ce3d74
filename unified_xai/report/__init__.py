"""The combined report: where + what scale + which concept, per input and per class (``ux.report``)."""
from .records import ClassConcepts, InputConcepts, InputResult, Report
from .run import DEFAULT_EXPLAINERS, report

__all__ = ["report", "Report", "InputResult", "InputConcepts", "ClassConcepts", "DEFAULT_EXPLAINERS"]
