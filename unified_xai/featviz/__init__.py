"""Feature visualisation: MACO images of logits, channels, neurons, directions and CRAFT concepts.

>>> import unified_xai as ux
>>> adapter = ux.data.load_model("planted-image")
>>> result = ux.featviz.maco(adapter, 1, steps=8)     # class 1's logit; any ux.objectives object works
>>> result.image.shape, result.alpha.shape
(torch.Size([3, 64, 64]), torch.Size([64, 64]))
"""
from .bank_images import concept_direction, concept_images
from .maco import MacoResult, crop_boxes, crop_views, maco, random_phase_images, render, sample_views
from .spectrum import COLOR_CORRELATION, decorrelate, estimate_spectrum, natural_spectrum, recorrelate, save_spectrum

__all__ = ["COLOR_CORRELATION", "MacoResult", "concept_direction", "concept_images", "crop_boxes", "crop_views", "decorrelate", "estimate_spectrum", "maco",
           "natural_spectrum", "random_phase_images", "recorrelate", "render", "sample_views", "save_spectrum"]
