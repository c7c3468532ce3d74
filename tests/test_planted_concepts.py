"""The planted CONCEPT dataset (objects made of parts of known place, Haar level and evidence) and its CNN.

Ground truth of ``planted-concepts``: part masks, presence, levels and evidence order; the crop rule of
``crop_truth`` (a crop contains a part when >= 50 % of the part's mask lies inside it); the design that
makes every part a concept the model must represent (an object shows two or three of its parts, never
one alone; every two parts of a class are contrasted by some items); and the
trained ``planted-concepts`` model: accuracy, exact fx splits, and an input-space ablation showing that it
uses the parts as built (removing a class's main part lowers the class logit most, and removing any part
lowers it clearly).
"""
from __future__ import annotations

import numpy as np
import pytest
import pywt
import torch

import unified_xai as ux
from unified_xai.core.errors import InputError, ParameterError
from unified_xai.data.datasets import ConceptDataset, part_indicators
from unified_xai.data.planted import (SPECS, background_pairs, generate_planted, is_object, part_ablation,
                                     part_evidence, part_rates)

NAME = "planted-concepts"
SPEC = SPECS[NAME]
PATCH = SPEC.extra["patch"]


@pytest.fixture(scope="module")
def test_set() -> ConceptDataset:
    return ux.data.load_dataset(NAME, "test")


@pytest.fixture(scope="module")
def adapter():
    return ux.data.load_model(NAME, device="cpu", progress=False)


# --------------------------------------------------------------------------- ground truth
def test_ground_truth_is_consistent(test_set):
    ds = test_set
    n, n_parts = len(ds), ds.n_parts
    assert isinstance(ds, ConceptDataset) and ds.input_shape == (3, 64, 64) and len(ds) == 400
    assert ds.part_masks.shape == (n, n_parts, 64, 64) and ds.part_masks.dtype == torch.bool
    assert ds.part_present.shape == (n, n_parts) and len(ds.part_names) == n_parts == 6
    assert sorted(ds.class_parts) == sorted(ds.part_evidence) == ["alpha", "beta", "gamma"]
    assert ds.part_levels.tolist() == [p["level"] for p in SPEC.extra["parts"]]
    assert torch.equal(ds.part_scales, ds.levels - ds.part_levels + 1)
    area = ds.part_masks.flatten(2).sum(2)
    # a present part is one whole PATCH x PATCH square inside the image, an absent one is empty
    assert torch.equal(area > 0, ds.part_present)
    assert (area[ds.part_present] == PATCH ** 2).all()
    for i, p in torch.nonzero(ds.part_present).tolist():
        y, x = ds.part_corners[i, p].tolist()
        assert y % SPEC.extra["align"] == 0 and x % SPEC.extra["align"] == 0
        assert ds.part_masks[i, p, y:y + PATCH, x:x + PATCH].all()
    assert (ds.part_corners[~ds.part_present] == -1).all()
    assert ds.part_masks.sum(1).max() <= 1  # parts never overlap
    # class structure: each object class has 3 parts of different levels and patterns; its main part is
    # its own, each other part is shared with one other class (the blue one by alpha and beta)
    owners = {}
    for cls, parts in ds.class_parts.items():
        assert len(parts) == 3 and len(set(ds.part_levels[parts].tolist())) == len(parts)
        assert len({SPEC.extra["parts"][p]["pattern"] for p in parts}) == len(parts)
        assert sorted(ds.part_evidence[cls]) == sorted(parts) and ds.main_parts[cls] == ds.part_evidence[cls][0]
        for p in parts:
            owners.setdefault(p, []).append(cls)
    for cls, main in ds.main_parts.items():
        assert owners[main] == [cls]
    assert sorted(len(classes) for classes in owners.values()) == [1, 1, 1, 2, 2, 2]
    assert owners[ds.part_names.index("blue-hbars-L3")] == ["alpha", "beta"]
    # each object item shows two or three parts of its class; a background item nothing, one part or two
    # parts that make no object
    for c, cls in enumerate(ds.class_names):
        sel = ds.targets == c
        shown = ds.part_present[sel]
        objects = [is_object(SPEC, torch.nonzero(row).flatten().tolist()) for row in shown]
        if cls == "background":
            assert set(shown.sum(1).tolist()) == {0, 1, 2} and not ds.has_evidence[sel].any()
            assert not any(objects)
        else:
            allowed = torch.zeros(n_parts, dtype=torch.bool)
            allowed[ds.class_parts[cls]] = True
            assert not shown[:, ~allowed].any() and all(objects)
            assert ds.has_evidence[sel].all() and (shown.sum(1) >= 2).all()
    # inherited fields: union of the class parts, the most-evidence part shown and its scale
    for i in range(n):
        cls = ds.class_names[int(ds.targets[i])]
        shown = [p for p in ds.part_evidence.get(cls, []) if ds.part_present[i, p]]
        assert torch.equal(ds.masks[i], ds.part_masks[i, shown].any(0) if shown else torch.zeros(64, 64, dtype=bool))
        assert int(ds.concepts[i]) == (shown[0] if shown else -1)
        assert int(ds.scales[i]) == (int(ds.part_scales[shown[0]]) if shown else -1)
    truth = ds.truth(int(torch.nonzero(ds.targets == 0)[0]))
    assert truth["class_parts"] == ds.part_evidence["alpha"] and truth["main_part"] == ds.main_parts["alpha"]
    assert truth["concept_name"] == ds.part_names[truth["concept"]] and truth["parts"]
    assert torch.equal(truth["part_masks"].any(0), ds.part_masks[truth["index"]].any(0))


def test_evidence_weights_by_construction(test_set):
    """The main part appears in no other object class and most often; observed rates match the designed ones."""
    rates = part_rates(SPEC)
    evidence = part_evidence(SPEC)
    assert evidence == test_set.part_evidence
    background = SPEC.class_names.index("background")
    objects = [k for k in range(len(SPEC.class_names)) if k != background]
    sample = generate_planted(NAME, 1200, seed=11)
    for c, cls in enumerate(SPEC.class_names):
        observed = sample.part_present[sample.targets == c].double().mean(0)
        assert torch.allclose(observed, rates[c], atol=0.1), (cls, observed, rates[c])  # 300 items: 3 sd < 0.09
        if cls != "background":
            main = evidence[cls][0]
            assert rates[c, main] == rates[c].max() and rates[objects, main].sum() == rates[c, main]
            assert rates[objects, evidence[cls][-1]].sum() > rates[c, evidence[cls][-1]]  # the least one: elsewhere too
            assert rates[background, evidence[cls]].min() > 0  # any part alone is background
            assert evidence[cls] == list(SPEC.extra["class_parts"][cls])  # main, second, third


def test_every_two_parts_of_a_class_are_contrasted():
    """For parts p != q of a class there is a part s such that exactly one of {p, s}, {q, s} is an object,
    and both pairs occur: the labels force a classifier to tell p from q. (Parts never contrasted may share
    one feature, and no concept extraction could separate them.)"""
    groups = [set(parts) for parts in SPEC.extra["class_parts"].values()]
    pairs = set(background_pairs(SPEC))
    n_parts = len(SPEC.extra["parts"])
    # every two parts of one class make an object; the other pairs are background
    assert all(is_object(SPEC, (p, q)) for g in groups for p in g for q in g if p != q)
    assert len(pairs) == n_parts * (n_parts - 1) // 2 - 3 * len(groups)
    assert not any(is_object(SPEC, [p]) for p in range(n_parts)) and not is_object(SPEC, [])
    sample = generate_planted(NAME, 2000, seed=12)
    seen = {tuple(torch.nonzero(row).flatten().tolist()) for row in sample.part_present if row.sum() == 2}
    assert pairs <= seen
    for g in groups:
        for p in g:
            for q in g - {p}:
                witnesses = [s for s in range(n_parts) if s not in (p, q)
                             and is_object(SPEC, (p, s)) != is_object(SPEC, (q, s))]
                assert any(tuple(sorted((p, s))) in seen and tuple(sorted((q, s))) in seen for s in witnesses), (p, q)


def test_each_part_sits_at_its_haar_level():
    """With the nuisance removed, each part alone has >= 95 % (here ~100 %) of its Haar energy in its level."""
    ds = generate_planted(NAME, 48, seed=5, clean=True)
    assert torch.equal(ds.part_masks, generate_planted(NAME, 48, seed=5).part_masks)
    assert (ds.inputs[:, :, ~ds.part_masks.any(1).any(0)] == 0).all()
    pairs = torch.nonzero(ds.part_present).tolist()
    alone = torch.stack([ds.inputs[i] * ds.part_masks[i, p] for i, p in pairs]).double()  # each part alone
    bands = ux.wavelets.dwt(alone, 2, "haar", levels=3, mode="zero")  # orthonormal for sizes divisible by 8
    energy = torch.stack([(bands.approx ** 2).flatten(1).sum(1)]
                         + [(d ** 2).flatten(1).sum(1) for d in bands.details], 1)  # pywt order
    coeffs = pywt.wavedecn(alone.numpy(), "haar", mode="periodization", level=3, axes=(-2, -1))
    reference = np.stack([(coeffs[0] ** 2).reshape(len(pairs), -1).sum(1)]
                         + [sum((v ** 2).reshape(len(pairs), -1).sum(1) for v in c.values()) for c in coeffs[1:]], 1)
    assert np.allclose(energy.numpy(), reference)
    share = energy / energy.sum(1, keepdim=True)
    scale = ds.part_scales[[p for _, p in pairs]]
    assert (share.gather(1, scale.view(-1, 1)) >= 0.95).all()
    assert {p for _, p in pairs} == set(range(ds.n_parts))  # every part was checked


def test_generation_is_deterministic_and_drops_parts_in_place():
    a, b = generate_planted(NAME, 60, seed=3), generate_planted(NAME, 60, seed=3)
    for field in ("inputs", "targets", "part_masks", "part_present", "part_corners", "masks", "scales", "concepts"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field
    assert not torch.equal(a.inputs, generate_planted(NAME, 60, seed=4).inputs)
    main = a.main_parts["beta"]
    dropped = a.without_parts([a.part_names[main]])
    assert torch.equal(dropped.targets, a.targets) and not dropped.part_present[:, main].any()
    others = torch.ones(a.n_parts, dtype=torch.bool)
    others[main] = False
    assert torch.equal(dropped.part_present[:, others], a.part_present[:, others])
    region = a.part_masks[:, main].unsqueeze(1).expand_as(a.inputs)
    assert torch.equal(dropped.inputs[~region], a.inputs[~region])  # only the part's region changes
    assert not torch.equal(dropped.inputs[region], a.inputs[region])
    assert (a.part_present[:, main].sum() > 0)
    per_item = torch.zeros(60, a.n_parts, dtype=torch.bool)
    per_item[0] = a.part_present[0]
    assert not generate_planted(NAME, 60, seed=3, drop_parts=per_item).part_present[0].any()
    with pytest.raises(ParameterError):
        generate_planted("planted-image", 4, seed=0, drop_parts=[0])
    with pytest.raises(ParameterError):
        a.without_parts(["no-such-part"])


# --------------------------------------------------------------------------- crops
def test_crop_truth_on_hand_made_boxes(test_set):
    ds = test_set
    i, p = torch.nonzero(ds.part_present)[0].tolist()
    y, x = ds.part_corners[i, p].tolist()
    boxes = torch.tensor([
        [y, x, PATCH],                  # exactly the part
        [y - 4, x - 4, 24],             # around it
        [y, x + PATCH // 2, PATCH],     # right half of it: 50 % -> contains
        [y, x + PATCH // 2 + 1, PATCH],  # 7 of 16 columns: 43.75 % -> does not
        [y - 8, x - 8, 8],              # next to it: 0 %
        [-8, -8, 100],                  # beyond the image on every side: clipped, all of it
    ])
    hits = ds.crop_truth([i] * len(boxes), boxes)
    assert hits.shape == (len(boxes), ds.n_parts) and hits.dtype == torch.float32
    assert hits[:, p].tolist() == [1.0, 1.0, 1.0, 0.0, 0.0, 1.0]
    fractions = ds.crop_truth([i] * len(boxes), boxes, threshold=None)[:, p]
    assert torch.allclose(fractions, torch.tensor([1.0, 1.0, 0.5, 7 / 16, 0.0, 1.0]))
    absent = ~ds.part_present[i]
    assert (hits[:, absent] == 0).all()  # a part the item does not show is in no crop
    # the last box holds every part of the item; rectangular boxes (start, start, height, width) too
    assert torch.equal(hits[-1], ds.part_present[i].float())
    rect = ds.crop_truth([i], torch.tensor([[y, x, PATCH, PATCH // 2]]), threshold=None)[0, p]
    assert float(rect) == 0.5
    assert torch.equal(part_indicators(ds, torch.cat([torch.full((len(boxes), 1), i), boxes], 1)), hits)
    with pytest.raises(InputError):
        ds.crop_truth([i], torch.tensor([[0, 0]]))


def test_crop_truth_matches_brute_force(test_set):
    ds = test_set
    gen = torch.Generator().manual_seed(0)
    items = torch.randint(0, len(ds), (200,), generator=gen)
    sizes = torch.randint(8, 48, (200, 1), generator=gen)
    starts = torch.randint(-8, 60, (200, 2), generator=gen)
    boxes = torch.cat([starts, sizes], 1)
    got = ds.crop_truth(items, boxes, threshold=None)
    for k in range(200):
        y0, x0, s = boxes[k].tolist()
        masks = ds.part_masks[int(items[k])]
        inside = masks[:, max(y0, 0):max(y0 + s, 0), max(x0, 0):max(x0 + s, 0)].flatten(1).sum(1).double()
        area = masks.flatten(1).sum(1).double()
        expected = torch.where(area > 0, inside / area.clamp(min=1), torch.zeros_like(area)).float()
        assert torch.allclose(got[k], expected), k
    assert torch.equal(ds.crop_truth(items, boxes), (got >= 0.5).float())


# --------------------------------------------------------------------------- the model
def test_model_loads_and_is_accurate(adapter, test_set):
    assert adapter.name == NAME and adapter.class_names == test_set.class_names
    assert tuple(adapter.input_shape) == (3, 64, 64)
    assert type(adapter.model).__name__ == "ConceptCNN"  # an ordinary CNN, no fixed transform
    accuracy = (adapter.predict(test_set.inputs, batch_size=400).argmax(1) == test_set.targets).float().mean().item()
    assert accuracy >= 0.95, accuracy


@pytest.mark.parametrize("layer,shape", [("features", (64, 16, 16)), ("features.5", (32, 16, 16)),
                                         ("features.7", (32, 16, 16))])
def test_splits_are_exact(adapter, test_set, layer, shape):
    x = test_set.inputs[:16]
    g, h = adapter.split(layer)
    acts = g(x)
    assert tuple(acts.shape) == (16, *shape)
    assert (acts >= 0).all()  # ReLU outputs: what CRAFT's NMF needs
    assert torch.allclose(h(acts), adapter.predict(x, batch_size=16), atol=1e-5)


def test_removing_the_main_part_lowers_the_class_logit_most(adapter, test_set):
    result = part_ablation(adapter.forward, test_set)  # the model is in eval mode
    for cls, drops in result["mean"].items():
        main = test_set.part_names[test_set.main_parts[cls]]
        others = {part: d for part, d in drops.items() if part != main}
        assert drops[main] > max(others.values()), (cls, drops)
        # also conditional on the part being shown, and by a margin: by construction the main part is one of
        # exactly two parts shown in 80 % of a class's items, the second part in 60 % (ratio 1.33)
        shown = result["mean_present"][cls]
        assert shown[main] > max(v for part, v in shown.items() if part != main), (cls, shown)
        assert drops[main] > 1.0 and drops[main] > 1.2 * max(others.values()), (cls, drops)
        # and every part carries class evidence: removing it from the items that show it lowers the logit clearly
        assert min(shown.values()) > max(3.0, 0.4 * shown[main]), (cls, shown)
    # a part absent from an item changes nothing
    assert (result["drops"][~test_set.part_present] == 0).all()
    assert np.isfinite(result["drops"].numpy()).all()
