"""Metrics that judge explanations.

* Faithfulness (:mod:`.faithfulness`): Deletion, Insertion, µ-Fidelity and infidelity in the pixel,
  wavelet, scales and concepts domains; Average Stability of an explainer under input noise.
* Algorithmic stability (:mod:`.stability`): MeGe and ReCo over k models trained on k folds.
* Recovery of planted ground truth (:mod:`.recovery`): where, at what scale, which concept.
"""
from .faithfulness import average_stability, deletion, infidelity, insertion, mu_fidelity
from .stability import MeGeReCo, mege_reco, mege_score, reco_score
from .recovery import concept_match, crop_overlap, explanation_recovery, mass_ratio, pointing_game, top_scale_hits

__all__ = ["MeGeReCo", "mege_reco", "mege_score", "reco_score", "average_stability", "concept_match", "crop_overlap", "deletion", "explanation_recovery", "infidelity",
           "insertion", "mass_ratio", "mu_fidelity", "pointing_game", "top_scale_hits"]
