"""Concepts: CRAFT concept banks per class (NMF of a layer's activations, Sobol importance, maps).

>>> craft = ux.concepts.Craft(adapter, "features", n_concepts=3).fit(images, class_id=0)
>>> craft.concepts_, craft.importances_            # (K, D) bank, (K,) importance, most important first
>>> craft.transform(x), craft.concept_maps(x)      # (N, K) coefficients, (N, K, *spatial) maps
>>> ux.create("wam", adapter, objective=craft.objective(0)).explain(x)   # the concept's scale profile
"""
from .bank import ConceptBank, class_banks, find_bank
from .craft import Craft, NegativeActivationsError, NotFittedError, nonnegative_layers, window_starts
from .nmf import nmf, nnls
from .objective import Concept, nnls_with_gradient
from .recursion import concept_sharing, refine_shared, shared_concepts

__all__ = ["Concept", "ConceptBank", "Craft", "concept_sharing", "NegativeActivationsError", "NotFittedError", "class_banks", "find_bank", "nmf",
           "nnls", "nnls_with_gradient", "nonnegative_layers", "refine_shared", "shared_concepts", "window_starts"]
