"""unified_xai.wavelets: reconstruction, agreement with pywt, gradients, layouts and errors."""
from __future__ import annotations

import numpy as np
import pytest
import pywt
import torch

from unified_xai import wavelets as W
from unified_xai.core.errors import InputError, ParameterError

SIZES = {1: [(1001,)], 2: [(33, 47)], 3: [(9, 12, 15), (15, 18, 21)]}
CASES = [(nd, s) for nd, sizes in SIZES.items() for s in sizes]


def _x(shape, dtype=torch.float32, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# --------------------------------------------------------------------------------------------------
# reconstruction
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("nd,size", CASES, ids=[f"{nd}d-{'x'.join(map(str, s))}" for nd, s in CASES])
@pytest.mark.parametrize("wavelet", ["haar", "db2", "sym4", "bior2.2"])
def test_perfect_reconstruction(nd, size, wavelet):
    top = W.max_levels(size, wavelet)
    if top == 0:  # e.g. 9 samples for an 8-tap filter: refused with a clear message instead
        with pytest.raises(ParameterError, match="too small"):
            W.dwt(_x((1, 1, *size)), nd, wavelet, levels=1)
        return
    x = _x((2, 2, *size))
    for mode in W.MODES:
        c = W.dwt(x, nd, wavelet, levels=min(3, top), mode=mode)
        assert c.levels == min(3, top) and c.size == size
        assert c.approx.shape[:2] == (2, 2)
        for d in c.details:
            assert d.shape[:3] == (2, 2, 2**nd - 1)
        rec = W.idwt(c)
        assert rec.shape == x.shape
        torch.testing.assert_close(rec, x, atol=2e-5, rtol=1e-5, msg=f"{wavelet} {mode}")


def test_dyadic_sizes_haar_coefficient_shapes():
    c = W.dwt(_x((1, 3, 32, 64)), 2, "haar", levels=3)
    assert [tuple(t.shape[-2:]) for t in c.tensors()] == [(4, 8), (4, 8), (8, 16), (16, 32)]
    assert c.level_names() == ["approximation", "level 3 (coarsest)", "level 2", "level 1 (finest)"]
    assert W.dwt(_x((1, 1, 8)), 1, "haar", levels=1).level_names() == ["approximation", "level 1 (coarsest, finest)"]


# --------------------------------------------------------------------------------------------------
# agreement with pywt (coefficients, level order and orientation order)
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("wavelet,mode", [("haar", "reflect"), ("db2", "symmetric"), ("bior2.2", "zero"),
                                          ("sym4", "periodic"), ("coif1", "constant")])
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_matches_pywt(nd, wavelet, mode):
    size = {1: (77,), 2: (30, 41), 3: (17, 16, 19)}[nd]
    levels = min(2, W.max_levels(size, wavelet))
    x = np.random.default_rng(0).standard_normal((2, 3, *size))
    c = W.dwt(torch.from_numpy(x), nd, wavelet, levels=levels, mode=mode)
    axes = tuple(range(-nd, 0))
    ref_n = pywt.wavedecn(x, wavelet, mode=mode, level=levels, axes=axes)  # dict keys: char k = axis k
    np.testing.assert_allclose(c.approx.numpy(), ref_n[0], atol=1e-10)
    for j, (ours, ref) in enumerate(zip(c.details, ref_n[1:])):
        assert ours.shape[2] == len(W.ORIENTATIONS[nd])
        for o, key in enumerate(W.ORIENTATIONS[nd]):
            np.testing.assert_allclose(ours[:, :, o].numpy(), ref[key], atol=1e-10, err_msg=f"level {j} {key}")
    # the dimension-specific pywt functions give the same order
    if nd == 1:
        ref = pywt.wavedec(x, wavelet, mode=mode, level=levels, axis=-1)
        for ours, r in zip(c.details, ref[1:]):
            np.testing.assert_allclose(ours[:, :, 0].numpy(), r, atol=1e-10)
    if nd == 2:
        ref = pywt.wavedec2(x, wavelet, mode=mode, level=levels, axes=(-2, -1))
        for ours, (h, v, d) in zip(c.details, ref[1:]):
            for o, r in enumerate((h, v, d)):  # pywt (cH, cV, cD)
                np.testing.assert_allclose(ours[:, :, o].numpy(), r, atol=1e-10)


@pytest.mark.parametrize("nd,size", [(1, (96,)), (2, (24, 40)), (3, (8, 16, 24))])
@pytest.mark.parametrize("levels", [1, 3])
def test_haar_butterfly_path_equals_ptwt(nd, size, levels):
    # Haar on sizes divisible by 2**levels takes the butterfly path, which must equal ptwt's convolutions
    # (and so pywt) in every boundary mode, both ways; other sizes and wavelets stay on ptwt.
    assert W._haar_exact("haar", size, levels) and W._haar_exact("db1", size, levels)
    assert not W._haar_exact("haar", (size[0] + 2, *size[1:]), 3) and not W._haar_exact("db2", size, 1)
    x = _x((2, 3, *size), dtype=torch.float64)
    for mode in W.MODES:
        ours = W.dwt(x, nd, "haar", levels=levels, mode=mode)
        approx, *details = W._DEC[nd](x, "haar", mode=mode, level=levels)
        torch.testing.assert_close(ours.approx, approx, atol=1e-12, rtol=0)
        for o, ref in zip(ours.details, details):
            torch.testing.assert_close(o, W._from_ptwt(ref, nd), atol=1e-12, rtol=0)
        rec = W._REC[nd]([approx, *details], "haar")
        torch.testing.assert_close(W.idwt(ours), rec, atol=1e-12, rtol=0)
    leaves = [t.clone().requires_grad_(True) for t in W.dwt(x[:1, :1], nd, "haar", levels).tensors()]
    assert torch.autograd.gradcheck(lambda *ts: W.idwt(ours.with_tensors(ts)), leaves, fast_mode=True)
    half = W.dwt(x.half(), nd, "haar", levels=levels)
    assert half.dtype == torch.float16 and W.idwt(half).dtype == torch.float16


# --------------------------------------------------------------------------------------------------
# gradients
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("nd,size", [(1, (13,)), (2, (8, 9)), (3, (6, 7, 6))])
def test_gradcheck_idwt_and_dwt(nd, size):
    x = _x((1, 2, *size), dtype=torch.float64)
    c = W.dwt(x, nd, "db2", levels=1, mode="symmetric")
    leaves = [t.clone().requires_grad_(True) for t in c.tensors()]
    fast = nd > 1  # full Jacobians of the 2D/3D cases take seconds on a busy CPU; random projections suffice
    assert torch.autograd.gradcheck(lambda *ts: W.idwt(c.with_tensors(ts)), leaves, fast_mode=fast)
    xs = x.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: tuple(W.dwt(v, nd, "db2", 1, "reflect").tensors()), (xs,),
                                    fast_mode=fast)


@pytest.mark.parametrize("nd,size", [(1, (64,)), (2, (16, 24)), (3, (8, 8, 16))])
def test_haar_orthonormal_gradient_identity(nd, size):
    # <w, idwt(z)> has gradient idwt^T(w) = dwt(w) when the transform is orthonormal
    assert W.is_orthonormal("haar", "reflect", size, 3)
    x, w = _x((2, 3, *size), seed=1), _x((2, 3, *size), seed=2)
    z = W.dwt(x, nd, "haar", levels=3).as_leaves()
    (W.idwt(z) * w).sum().backward()
    for g, ref in zip(z.tensors(), W.dwt(w, nd, "haar", levels=3).tensors()):
        torch.testing.assert_close(g.grad, ref, atol=1e-5, rtol=1e-5)


def test_is_orthonormal():
    for mode in W.MODES:
        assert W.is_orthonormal("haar", mode, (32, 32), 3)
    assert W.is_orthonormal("db1", "zero", 64, 2)
    assert W.is_orthonormal("bior1.1", "symmetric", (16, 8, 8), 3)
    assert not W.is_orthonormal("haar", "reflect", (33, 47), 3)   # padding needed
    assert not W.is_orthonormal("haar", "reflect", (36, 36), 3)   # 36 not divisible by 8
    assert not W.is_orthonormal("db2", "reflect", (32, 32), 3)
    assert not W.is_orthonormal("sym4", "periodic", (64, 64), 2)


# --------------------------------------------------------------------------------------------------
# per-level summaries
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("nd,size,wavelet", [(1, (100,), "db2"), (2, (33, 47), "sym4"), (2, (32, 32), "haar"),
                                             (3, (9, 12, 15), "haar")])
def test_level_maps_shape_and_mass(nd, size, wavelet):
    c = W.dwt(_x((2, 3, *size)), nd, wavelet, levels=2).map(lambda t: t.double())
    energy = W.level_energy(c)
    assert energy.shape == (2, 3)
    for reduce in ("abs", "signed", "square"):
        maps = W.level_maps(c, reduce=reduce)
        assert maps.shape == (2, 3, *size)
        torch.testing.assert_close(maps.flatten(2).sum(2), W.level_totals(c, reduce))
    maps = W.level_maps(c)
    assert (maps >= 0).all()
    torch.testing.assert_close(maps.flatten(2).sum(2), energy)
    torch.testing.assert_close(maps.sum(1).flatten(1).sum(1), sum(t.abs().flatten(1).sum(1) for t in c.tensors()))
    # another output grid keeps the mass too
    small = W.level_maps(c, size=tuple(max(1, s // 3) for s in size))
    torch.testing.assert_close(small.flatten(2).sum(2), energy)


def test_level_maps_resize_is_multilinear_and_handles_shrinking():
    # enlarging: the per-axis resize equals F.interpolate bilinear/trilinear of the density r / area
    import torch.nn.functional as F
    for nd, size, mode in [(2, (16, 24), "bilinear"), (3, (8, 8, 16), "trilinear")]:
        c = W.dwt(_x((1, 2, *size), dtype=torch.float64), nd, "haar", levels=2)
        d = c.details[-1].abs().sum((1, 2)).unsqueeze(1)  # level 1, (1, 1, *size/2)
        ref = F.interpolate(d / 2**nd, size=size, mode=mode, align_corners=False)[:, 0]
        torch.testing.assert_close(W.level_maps(c)[:, -1], ref)
    # shrinking by more than 2 (linear interpolation would skip samples): still finite, mass kept
    c = W.dwt(_x((1, 3, 64, 64), dtype=torch.float64), 2, "db2", levels=1)
    m = W.level_maps(c, size=(7, 5))
    assert torch.isfinite(m).all()
    torch.testing.assert_close(m.flatten(2).sum(2), W.level_energy(c))


def test_level_maps_haar_block_density():
    # Haar, dyadic: a single level-1 coefficient spreads around its 2x2 block, the level-2 one spreads more
    c = W.dwt(torch.zeros(1, 1, 16, 16), 2, "haar", levels=2)
    c.details[1][0, 0, 2, 3, 5] = 4.0  # level 1, diagonal, position (3, 5) -> pixels (6..7, 10..11)
    m = W.level_maps(c)[0, 2]
    assert m.sum().item() == pytest.approx(4.0)
    assert m.argmax().item() // 16 in (6, 7) and m.argmax().item() % 16 in (10, 11)
    assert torch.count_nonzero(W.level_maps(c)[0, :2]) == 0


# --------------------------------------------------------------------------------------------------
# flat views and layouts
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("nd,size,wavelet", [(1, (101,), "db2"), (2, (33, 47), "bior2.2"), (3, (9, 12, 15), "haar")])
def test_pack_unpack_round_trip(nd, size, wavelet):
    c = W.dwt(_x((2, 3, *size)), nd, wavelet, levels=2)
    flat = W.pack(c)
    n = sum(t[0, 0].numel() for t in c.tensors())
    assert flat.shape == (2, 3, n)
    back = W.unpack(flat, c)
    for a, b in zip(c.tensors(), back.tensors()):
        assert torch.equal(a, b)
    torch.testing.assert_close(W.idwt(back), W.idwt(c))
    lv = W.packed_levels(c)
    assert lv.shape == (n,) and lv[0] == 0 and lv[-1] == c.levels
    assert [(lv == k).sum().item() for k in range(c.levels + 1)] == [t[0, 0].numel() for t in c.tensors()]
    # masks with other leading dims (e.g. Sobol masks shared by the channels)
    masks = W.unpack(torch.rand(5, 1, n), c)
    assert masks.approx.shape == (5, 1, *c.approx.shape[2:])
    assert masks.details[0].shape == (5, 1, *c.details[0].shape[2:])
    with pytest.raises(InputError, match="expected"):
        W.unpack(flat[..., :-1], c)


def test_dyadic_layout_matches_pywt_coeffs_to_array():
    x = _x((2, 3, 32, 16), dtype=torch.float64)
    c = W.dwt(x, 2, "haar", levels=3)
    lay = W.dyadic_layout(c)
    assert lay.shape == (2, 3, 32, 16)
    for b in range(2):
        for ch in range(3):
            ref, _ = pywt.coeffs_to_array(pywt.wavedec2(x[b, ch].numpy(), "haar", mode="reflect", level=3))
            np.testing.assert_allclose(lay[b, ch].numpy(), ref, atol=1e-12)
    # 1D and 3D follow the same per-axis rule as pywt
    x1 = _x((1, 1, 32), dtype=torch.float64)
    ref1, _ = pywt.coeffs_to_array(pywt.wavedec(x1[0, 0].numpy(), "haar", level=3))
    np.testing.assert_allclose(W.dyadic_layout(W.dwt(x1, 1, "haar", 3))[0, 0].numpy(), ref1, atol=1e-12)
    x3 = _x((1, 1, 8, 16, 8), dtype=torch.float64)
    ref3, _ = pywt.coeffs_to_array(pywt.wavedecn(x3[0, 0].numpy(), "haar", level=2))
    np.testing.assert_allclose(W.dyadic_layout(W.dwt(x3, 3, "haar", 2))[0, 0].numpy(), ref3, atol=1e-12)
    # WAM reference convention: H top-right, V bottom-left
    wam = W.dyadic_layout(c, convention="wam")
    h1, v1 = c.details[-1][:, :, 0], c.details[-1][:, :, 1]
    assert torch.equal(wam[..., :16, 8:], h1) and torch.equal(wam[..., 16:, :8], v1)
    assert torch.equal(lay[..., 16:, :8], h1) and torch.equal(lay[..., :16, 8:], v1)


def test_dyadic_layout_rejects_non_tiling():
    with pytest.raises(InputError, match="tile.*Haar.*level_maps"):
        W.dyadic_layout(W.dwt(_x((1, 1, 32, 32)), 2, "db2", levels=2))
    with pytest.raises(InputError, match="divisible by 2\\*\\*levels=4"):
        W.dyadic_layout(W.dwt(_x((1, 1, 33, 32)), 2, "haar", levels=2))


# --------------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------------
def test_errors_are_clear():
    x = _x((1, 3, 32, 32))
    with pytest.raises(ParameterError, match="unsupported wavelet 'dmey'.*reconstruct exactly.*'haar'"):
        W.dwt(x, 2, "dmey")
    with pytest.raises(ParameterError, match="unsupported wavelet 'morl'.*continuous"):
        W.dwt(x, 2, "morl")
    with pytest.raises(ParameterError, match="did you mean.*'db2'"):
        W.dwt(x, 2, "db2x")
    with pytest.raises(ParameterError, match="boundary mode 'periodization'.*ptwt"):
        W.dwt(x, 2, "haar", mode="periodization")
    with pytest.raises(ParameterError, match="boundary mode 'foo'.*reflect"):
        W.dwt(x, 2, "haar", mode="foo")
    with pytest.raises(ParameterError, match="levels must be an integer >= 1"):
        W.dwt(x, 2, "haar", levels=0)
    with pytest.raises(ParameterError, match="levels=9 is too deep.*at most 5"):
        W.dwt(x, 2, "haar", levels=9)
    with pytest.raises(ParameterError, match="too small"):
        W.dwt(_x((1, 1, 5)), 1, "sym8", levels=1)
    with pytest.raises(InputError, match="4-D tensor \\(B, C, H, W\\), got shape \\(3, 32, 32\\)"):
        W.dwt(x[0], 2)
    with pytest.raises(ParameterError, match="ndim must be 1"):
        W.dwt(x, 4)
    with pytest.raises(InputError, match="floating-point"):
        W.dwt(torch.ones(1, 1, 8, dtype=torch.long), 1, levels=1)
    with pytest.raises(ParameterError, match="reduce"):
        W.level_maps(W.dwt(x, 2), reduce="max")
    assert "dmey" not in W.WAVELETS and "haar" in W.WAVELETS and "bior2.2" in W.WAVELETS
    assert W.max_levels((33, 47), "db2") == 3 and W.max_levels(1001, "haar") == 9


def test_dtype_and_device_preserved():
    x = _x((2, 1, 17, 20), dtype=torch.float64)
    c = W.dwt(x, 2, "db2", levels=2)
    assert all(t.dtype == torch.float64 and t.device == x.device for t in c.tensors())
    out = W.idwt(c)
    assert out.dtype == torch.float64 and out.device == x.device
    torch.testing.assert_close(out, x, atol=1e-12, rtol=0)
    h = _x((1, 2, 16)).half()  # ptwt only runs float32/64: computed in float32, handed back as half
    ch = W.dwt(h, 1, "haar", levels=2)
    assert ch.dtype == torch.float16 and W.idwt(ch).dtype == torch.float16
    assert W.level_maps(c).dtype == torch.float64 and W.pack(c).dtype == torch.float64
