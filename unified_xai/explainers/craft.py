"""``craft`` in the registry: which concepts of its class an input uses, where, and at what scale.

For each input, from the concept bank of its target class (:class:`unified_xai.concepts.Craft`,
loaded from a file or a bank folder, or fitted on demand on a dataset's images of that class):

* ``concept_ids`` (B, K): the bank's concepts, most important over the class first;
* ``concept_importances`` (B, K): their total Sobol indices for this input;
* ``concept_maps`` (B, K, *spatial): where each concept lies in this input;
* ``concept_scales`` (B, K, levels + 1): each concept's wavelet scale profile in this input —
  ``wam`` attributing the concept's coefficient (``scales=False`` skips it);
* ``where``: the concept maps weighted by their importance for the input.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ..concepts import ConceptBank, Craft
from ..concepts.bank import bank_filename
from ..core.errors import InputError, ParameterError
from ..core.explanation import Explanation
from ..core.registry import Param, register_explainer
from .base import WAVELET_PARAMS, Explainer
from .gradient_baselines import default_cam_layer


def _bank_ok(value):
    if value is None or isinstance(value, (ConceptBank, str, os.PathLike)):
        return None
    return "must be None, a ConceptBank, a bank file (.h5) or a folder of banks"


def _dataset_ok(value):
    from ..data import ArrayDataset

    if value is None or isinstance(value, (str, ArrayDataset)):
        return None
    return "must be None, a built-in dataset name (`uxai list`) or a ux.data.ArrayDataset"


@register_explainer("craft")
class CraftExplainer(Explainer):
    """CRAFT concepts (Fel et al., CVPR 2023) of each input's target class: importance, maps, scale profiles.

    Cost per input: the importance's ``n_designs (K + 2)`` evaluations of the model after ``layer``,
    one forward for the maps, and with ``scales`` K WAM runs of ``wam_samples`` forward + backward.
    Fitting a bank on demand costs one forward per crop of the class images (see ``ux.concepts.Craft``).
    """

    params = {
        "layer": Param(None, types=(str,), allow_none=True,
                       doc="layer of the concept bank (non-negative activations); None: the last spatial layer"),
        "n_concepts": Param(10, types=(int,), low=1, doc="concepts per class (when a bank is fitted)"),
        "bank": Param(None, check=_bank_ok, allow_none=True,
                      doc="a ConceptBank, a bank file, or a folder of banks (one per class)"),
        "dataset": Param(None, check=_dataset_ok, allow_none=True,
                         doc="fit missing banks on this dataset's images of the class (built-in name or ArrayDataset)"),
        "split": Param("test", types=(str,), doc="split of a built-in dataset"),
        "max_images": Param(64, types=(int,), low=1, doc="class images used to fit a bank on demand"),
        "patch_size": Param(None, types=(int,), low=1, allow_none=True, doc="crop side (None: 0.3 x input size)"),
        "n_designs": Param(32, types=(int,), low=2, doc="Sobol designs of the concept importance"),
        "scales": Param(True, types=(bool,), doc="each concept's wavelet scale profile (WAM on the concept)"),
        "wam_samples": Param(16, types=(int,), low=1, doc="WAM path points per concept scale profile"),
        **{k: WAVELET_PARAMS[k] for k in ("wavelet", "levels")},
        "seed": Param(0, types=(int,), doc="seed of the NMF and of the Sobol design"),
        "batch_size": Param(None, types=(int,), low=1, allow_none=True, doc="rows per model call"),
    }

    def _check_config(self) -> None:
        c = self.config
        if c["layer"] is not None:
            from ..core import hooks

            hooks.get_layer(self.adapter.model, c["layer"])
        if isinstance(c["bank"], ConceptBank) and c["layer"] is not None and c["bank"].layer != c["layer"]:
            raise ParameterError(f"craft: the bank is at layer {c['bank'].layer!r}, not {c['layer']!r}")
        bank = c["bank"]
        if isinstance(bank, (str, os.PathLike)) and not os.path.exists(bank) and c["dataset"] is None:
            raise ParameterError(f"craft: bank {os.fspath(bank)!r} does not exist; give a bank file or folder, or"
                                 f" dataset=NAME to fit the banks")
        self._crafts: dict[int, Craft] = {}

    # ------------------------------------------------------------ banks
    def _layer(self, x: torch.Tensor) -> str:
        c = self.config
        if c["layer"] is None:
            c["layer"] = c["bank"].layer if isinstance(c["bank"], ConceptBank) else default_cam_layer(self.adapter, x[:1])
        return c["layer"]

    def craft_for(self, class_id: int, x: torch.Tensor) -> Craft:
        """The fitted Craft of ``class_id``: from ``bank``, else fitted on ``dataset`` (and saved in a bank folder)."""
        if class_id in self._crafts:
            return self._crafts[class_id]
        c = self.config
        layer = self._layer(x)
        bank = c["bank"]
        folder = Path(bank) if isinstance(bank, (str, os.PathLike)) and not Path(bank).is_file() else None
        craft = None
        if isinstance(bank, ConceptBank) or (isinstance(bank, (str, os.PathLike)) and Path(bank).is_file()):
            craft = Craft.from_bank(self.adapter, bank, batch_size=c["batch_size"], progress=self.adapter.progress)
            if craft.class_id_ != class_id:
                raise InputError(f"craft: the bank is for class {craft.class_id_}, but an input's target is class"
                                 f" {class_id}; give a folder of banks (one per class) or targets={craft.class_id_}")
        elif c["dataset"] is not None:
            craft = self._new_craft(layer).fit(self._class_images(class_id), class_id, bank_dir=folder)
        elif folder is not None:
            found = sorted(folder.glob(bank_filename(self.adapter.name, layer, class_id, "*")),
                           key=lambda p: p.stat().st_mtime)
            if found:
                craft = Craft.from_bank(self.adapter, found[-1], batch_size=c["batch_size"],
                                        progress=self.adapter.progress)
        if craft is None:
            raise InputError(
                f"craft: no concept bank for class {self._name(class_id)} at layer {layer!r}; pass dataset=NAME to fit"
                f" one, or build it first: `uxai concepts {self.adapter.name} --class {class_id} --layer {layer}`")
        self._crafts[class_id] = craft
        return craft

    def _new_craft(self, layer: str) -> Craft:
        c = self.config
        return Craft(self.adapter, layer, c["n_concepts"], patch_size=c["patch_size"], n_designs=c["n_designs"],
                     seed=c["seed"], batch_size=c["batch_size"], progress=self.adapter.progress)

    def _class_images(self, class_id: int) -> torch.Tensor:
        from ..data import load_dataset

        c = self.config
        ds = load_dataset(c["dataset"], c["split"]) if isinstance(c["dataset"], str) else c["dataset"]
        images = ds.inputs[ds.targets == class_id][: c["max_images"]]
        if images.shape[0] == 0:
            raise InputError(f"craft: dataset {ds.name!r} ({ds.split}) has no item of class {self._name(class_id)} to"
                             f" fit its concept bank; give a bank, or a dataset holding that class")
        return images

    def _name(self, class_id: int) -> str:
        names = self.adapter.class_names
        return f"{class_id} ({names[class_id]!r})" if names and class_id < len(names) else str(class_id)

    # ------------------------------------------------------------ explain
    def _explain(self, x, targets):
        c = self.config
        fields: dict[str, list] = {"ids": [], "importances": [], "maps": [], "scales": []}
        rows = []
        level_names = None
        for class_id in torch.unique(targets).tolist():
            index = torch.nonzero(targets == class_id).flatten()
            craft = self.craft_for(int(class_id), x)
            xs = x[index]
            K = craft.concepts_.shape[0]
            fields["importances"].append(craft.importance(xs, class_id))
            fields["maps"].append(craft.concept_maps(xs))
            fields["ids"].append(torch.arange(K).expand(len(index), K))
            if c["scales"]:
                profiles = []
                for k in range(K):
                    e = _wam(self.adapter, craft.objective(k), c).explain(xs, targets=int(class_id))
                    profiles.append(e.scales)
                    level_names = e.level_names
                fields["scales"].append(torch.stack(profiles, dim=1))
            rows.append(index)
        order = torch.argsort(torch.cat(rows))
        sizes = {f.shape[1] for f in fields["ids"]}
        if len(sizes) != 1:
            raise InputError(f"craft: the banks of these inputs' classes have different numbers of concepts {sorted(sizes)};"
                             f" explain the classes separately")
        device = x.device
        importances = torch.cat(fields["importances"])[order].to(device)
        maps = torch.cat(fields["maps"])[order]
        weights = importances / importances.sum(1, keepdim=True).clamp_min(1e-12)
        where = (weights.view(*weights.shape, *[1] * (maps.ndim - 2)) * maps).sum(1)
        return Explanation(
            where=where, method=self.name, concept_ids=torch.cat(fields["ids"])[order].to(device),
            concept_importances=importances, concept_maps=maps,
            concept_scales=torch.cat(fields["scales"])[order] if c["scales"] else None, level_names=level_names)


def _wam(adapter, objective, config):
    from ..core.registry import create

    return create("wam", adapter, objective=objective, n_samples=config["wam_samples"], wavelet=config["wavelet"],
                  levels=config["levels"], batch_size=config["batch_size"])
