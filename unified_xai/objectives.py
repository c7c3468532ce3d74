"""What a method attributes or maximises: ``ux.objectives.Logit``, ``Channel``, ``Neuron``, ``Direction``
and ``Concept`` (a CRAFT concept coefficient), combinable with ``+``, ``-`` and weights.

Every gradient explainer takes ``objective=`` (default: the target logit); MACO maximises the same
objects. Defined in :mod:`unified_xai.core.objectives` and :mod:`unified_xai.concepts.objective`.
"""
from .core.objectives import Channel, Combination, Direction, Logit, Neuron, Objective, as_objective

__all__ = ["Channel", "Combination", "Direction", "Logit", "Neuron", "Objective", "as_objective"]
