"""Metrics that judge explanations. Today: recovery of planted ground truth (where, scale).

The faithfulness metrics (Deletion, Insertion, mu-Fidelity) and stability will live here too.
"""
from .recovery import concept_match, crop_overlap, explanation_recovery, mass_ratio, pointing_game, top_scale_hits

__all__ = ["concept_match", "crop_overlap", "explanation_recovery", "mass_ratio", "pointing_game", "top_scale_hits"]
