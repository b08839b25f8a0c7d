"""Tests for segbook.crf: the three dense-CRF backends agree, gradients flow, bad input is caught."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from crf_fixtures import noisy_probs, random_scene

from segbook import crf
from segbook.crf import (
    BACKENDS,
    PermutohedralLattice,
    dense_crf,
    gaussian_blur,
    mean_field,
    mean_field_iterates,
    resolve_backend,
    unary_from_probs,
)
from segbook.crf.exact import ExactKernel, pixel_features
from segbook.data import ShapesSegmentation

HAS_PYDENSECRF = crf.pydensecrf_available()
needs_pydensecrf = pytest.mark.skipif(not HAS_PYDENSECRF, reason='pydensecrf not installed (pip install "segbook[crf]")')
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def scene(size: int, seed: int, num_classes: int = 21):
    """A 21-class synthetic scene and network-like probabilities (about 30-40% of pixels right)."""
    image, labels = random_scene(size, num_classes, seed=seed)
    return image, labels, noisy_probs(labels, num_classes, seed=seed, noise=1.5, confidence=2.5)


def shapes(size: int, index: int):
    """A ShapesSegmentation image (uint8 [H, W, 3]), its mask and noisy probabilities of the mask."""
    images, masks = ShapesSegmentation(index + 1, size=size, seed=3).tensors()
    image = (images[index].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    mask = masks[index].numpy()
    return image, mask, noisy_probs(mask, 6, seed=index, noise=1.5, confidence=2.5)


def agreement(a, b) -> float:
    return float((np.asarray(a).argmax(0) == np.asarray(b).argmax(0)).mean())


# ------------------------------------------------------------------------------------ agreement

@needs_pydensecrf
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_agrees_with_pydensecrf(seed):
    image, labels, probs = scene(40, seed)
    exact = dense_crf(image, probs, backend="exact")
    ref = dense_crf(image, probs, backend="pydensecrf")
    # pydensecrf's permutohedral lattice only approximates the Gaussians: labels agree, probabilities roughly
    assert agreement(exact, ref) >= 0.98
    assert np.abs(exact - ref).mean() < 0.02
    # and the CRF did its job: it is far more accurate than its input
    assert (ref.argmax(0) == labels).mean() > (probs.argmax(0) == labels).mean() + 0.3


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lattice_agrees_with_exact_21_classes(seed):
    image, _, probs = scene(40, seed)
    fast = dense_crf(image, probs, backend="lattice")
    exact = dense_crf(image, probs, backend="exact")
    assert agreement(fast, exact) >= 0.98
    assert np.abs(fast - exact).mean() < 0.02


@pytest.mark.parametrize("index", [0, 1])
def test_lattice_agrees_with_exact_on_shapes(index):
    image, mask, probs = shapes(40, index)
    fast = dense_crf(image, probs, backend="lattice")
    exact = dense_crf(image, probs, backend="exact")
    assert agreement(fast, exact) >= 0.98


@needs_pydensecrf
@pytest.mark.parametrize("seed", [0, 1])
def test_lattice_agrees_with_pydensecrf_21_classes(seed):
    image, _, probs = scene(96, seed)
    fast = dense_crf(image, probs, backend="lattice")
    ref = dense_crf(image, probs, backend="pydensecrf")
    assert agreement(fast, ref) >= 0.98
    # the same lattice algorithm on the appearance kernel: probabilities close too
    assert np.abs(fast - ref).mean() < 0.01


@needs_pydensecrf
@pytest.mark.parametrize("index", [0, 1, 2])
def test_lattice_agrees_with_pydensecrf_on_shapes(index):
    image, mask, probs = shapes(64, index)
    fast = dense_crf(image, probs, backend="lattice")
    ref = dense_crf(image, probs, backend="pydensecrf")
    assert agreement(fast, ref) >= 0.98
    assert (fast.argmax(0) == mask).mean() > (probs.argmax(0) == mask).mean()


def test_exact_chunked_equals_cached():
    image, _, probs = scene(24, 0, num_classes=4)
    feats = pixel_features(torch.from_numpy(image), 80, 13, torch.float64)
    cached = ExactKernel(feats)
    chunked = ExactKernel(feats, chunk_bytes=24 * 24 * 8 * 7, cache_bytes=0)  # 7 rows a block
    assert cached.full is not None and chunked.full is None and chunked.rows == 7
    values = torch.rand(24 * 24, 3, dtype=torch.float64)
    brute = torch.exp(-0.5 * torch.cdist(feats, feats) ** 2) @ values
    torch.testing.assert_close(cached(values), brute)
    torch.testing.assert_close(chunked(values), brute)


def test_pixel_features_are_x_then_y_then_colour():
    """pydensecrf's order and scaling: (x/sxy, y/sxy, r/srgb, g/srgb, b/srgb), pixels in row-major order."""
    image = np.zeros((2, 3, 3), np.uint8)
    image[1, 2] = (30, 60, 90)
    feats = pixel_features(torch.from_numpy(image), 2.0, 10.0, torch.float64)
    assert feats.shape == (6, 5) and feats.dtype == torch.float64
    torch.testing.assert_close(feats[5], torch.tensor([1.0, 0.5, 3.0, 6.0, 9.0], dtype=torch.float64))
    torch.testing.assert_close(pixel_features(torch.from_numpy(image), 2.0, None, torch.float32), feats[:, :2].float())


def test_gaussian_blur_is_the_exact_gaussian_sum():
    h, w, sigma = 9, 13, 1.5
    x = torch.rand(h, w, 2, dtype=torch.float64)
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    pos = torch.stack([ys.flatten(), xs.flatten()], 1).double()
    kernel = torch.exp(-torch.cdist(pos, pos) ** 2 / (2 * sigma ** 2))
    expected = (kernel @ x.reshape(-1, 2)).reshape(h, w, 2)
    torch.testing.assert_close(gaussian_blur(x, sigma), expected, rtol=1e-5, atol=1e-6)


def test_permutohedral_lattice_approximates_a_unit_gaussian():
    gen = torch.Generator().manual_seed(0)
    feats = torch.rand(300, 5, generator=gen, dtype=torch.float64) * 4
    lattice = PermutohedralLattice(feats)
    w = lattice.weights
    assert w.shape == (300, 6) and (w >= -1e-12).all()
    torch.testing.assert_close(w.sum(1), torch.ones(300, dtype=torch.float64))
    assert lattice.num_points <= 300 * 6
    values = torch.rand(300, 3, generator=gen, dtype=torch.float64)
    exact = torch.exp(-0.5 * torch.cdist(feats, feats) ** 2) @ values
    fast = lattice.filter(values)
    # a coarse approximation whose overall scale is arbitrary (the CRF normalises it away): the
    # filtered values follow the exact ones closely, pixel by pixel, up to a common factor (~0.45)
    ratio = fast / exact
    assert (ratio.std() / ratio.mean()) < 0.25
    assert np.corrcoef(fast.flatten().numpy(), exact.flatten().numpy())[0, 1] > 0.95
    # linear in the values
    torch.testing.assert_close(lattice.filter(2 * values + 1), 2 * fast + lattice.filter(torch.ones_like(values)))


# -------------------------------------------------------------------------- semantics and types

@pytest.mark.parametrize("backend", BACKENDS)
def test_output_kind_shape_and_normalisation(backend):
    if backend == "pydensecrf" and not HAS_PYDENSECRF:
        pytest.skip("pydensecrf not installed")
    image, _, probs = scene(20, 0, num_classes=3)
    out = dense_crf(image, probs.astype(np.float64), backend=backend, iterations=3)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == probs.shape
    np.testing.assert_allclose(out.sum(0), 1, atol=1e-5)
    t = dense_crf(torch.from_numpy(image), torch.from_numpy(probs), backend=backend, iterations=3)
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32 and t.shape == probs.shape
    np.testing.assert_allclose(t.numpy(), out, atol=1e-5)


def test_zero_iterations_returns_the_clipped_input():
    image, _, probs = scene(16, 0, num_classes=3)
    out = dense_crf(image, probs, backend="lattice", iterations=0)
    expected = np.maximum(probs, crf.PROB_FLOOR)
    np.testing.assert_allclose(out, expected / expected.sum(0), atol=1e-6)


def test_unary_from_probs_floors_at_prob_floor():
    u = unary_from_probs(torch.tensor([[0.0, 0.5], [1.0, 0.5]]).view(2, 1, 2))
    assert torch.isfinite(u).all()
    torch.testing.assert_close(u.flatten(), torch.tensor([-np.log(1e-5), np.log(2), 0.0, np.log(2)]).float())


@pytest.mark.parametrize("backend", BACKENDS)
def test_mean_field_iterates_end_at_dense_crf(backend):
    if backend == "pydensecrf" and not HAS_PYDENSECRF:
        pytest.skip("pydensecrf not installed")
    image, _, probs = scene(24, 1, num_classes=5)
    steps = mean_field_iterates(image, probs, backend=backend, iterations=4)
    assert len(steps) == 5 and all(s.shape == probs.shape for s in steps)
    final = dense_crf(image, probs, backend=backend, iterations=4)
    if backend == "pydensecrf":  # its inference() and step-by-step loop are separate C++ paths
        np.testing.assert_allclose(steps[-1], final, atol=1e-5)
    else:  # one torch code path: bit for bit
        np.testing.assert_array_equal(steps[-1], final)
    np.testing.assert_allclose(steps[0].argmax(0), probs.argmax(0))
    assert np.abs(steps[1] - steps[0]).mean() > 1e-3  # an iteration changes something


def test_width_and_height_are_not_swapped():
    """A non-square image: a vertical colour edge must steer labels in every backend alike."""
    image = np.zeros((20, 32, 3), np.uint8)
    image[:, 16:] = 200
    labels = np.zeros((20, 32), np.int64)
    labels[:, 16:] = 1
    probs = noisy_probs(labels, 2, seed=0, noise=2.0, confidence=1.0)
    for backend in ["lattice", "exact"] + (["pydensecrf"] if HAS_PYDENSECRF else []):
        out = dense_crf(image, probs, backend=backend)
        assert (out.argmax(0) == labels).mean() > 0.99, backend


# ------------------------------------------------------------------------------------ gradients

@pytest.mark.parametrize("backend", ["lattice", "exact"])
def test_gradcheck_wrt_unaries_and_weights(backend):
    image, _, probs = scene(8, 0, num_classes=3)
    image = np.ascontiguousarray(image[:4, :5])
    unary = unary_from_probs(torch.from_numpy(probs[:, :4, :5]).double()).requires_grad_()
    wg = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)
    wb = torch.tensor(10.0, dtype=torch.float64, requires_grad=True)

    def f(u, g, b):
        return mean_field(u, image, backend=backend, iterations=2, gaussian_compat=g, bilateral_compat=b,
                          bilateral_srgb=40.0)
    assert torch.autograd.gradcheck(f, (unary, wg, wb), eps=1e-6, atol=1e-5)


def test_dense_crf_passes_gradients_to_probs():
    image, labels, probs = scene(16, 0, num_classes=4)
    p = torch.from_numpy(probs).requires_grad_()
    out = dense_crf(torch.from_numpy(image), p)  # auto: gradients needed, so the lattice backend
    assert out.is_contiguous() and out.requires_grad
    loss = torch.nn.functional.nll_loss(out.clamp_min(1e-6).log()[None], torch.from_numpy(labels)[None])
    loss.backward()
    assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


# ---------------------------------------------------------------------------------- bad inputs

@pytest.mark.parametrize("image, probs, error, match", [
    (np.zeros((8, 8, 3), np.float32), None, TypeError, "uint8"),
    (np.zeros((3, 8, 8), np.uint8), None, ValueError, "channels-first"),
    (np.zeros((8, 8), np.uint8), None, ValueError, r"\[H, W, 3\]"),
    ([[0]], None, TypeError, "numpy array or torch tensor"),
    (None, np.ones((1, 2, 8, 8), np.float32) / 2, ValueError, "batch"),
    (None, np.ones((2, 8, 8), np.int64), TypeError, "floating point"),
    (None, np.full((2, 8, 8), 0.7, np.float32), ValueError, "sum to 1"),
    (None, np.stack([np.full((8, 8), 2.0), np.full((8, 8), -1.0)]).astype(np.float32), ValueError, "logits"),
    (None, np.full((2, 8, 8), np.nan, np.float32), ValueError, "NaN"),
    (None, np.ones((1, 8, 8), np.float32), ValueError, "at least 2 classes"),
    (None, np.ones((2, 8, 9), np.float32) / 2, ValueError, "resize"),
])
def test_bad_inputs_are_explained(image, probs, error, match):
    image = np.zeros((8, 8, 3), np.uint8) if image is None else image
    probs = np.ones((2, 8, 8), np.float32) / 2 if probs is None else probs
    with pytest.raises(error, match=match):
        dense_crf(image, probs, backend="lattice")


@pytest.mark.parametrize("kwargs, error, match", [
    ({"backend": "densecrf"}, ValueError, "unknown backend"),
    ({"iterations": -1}, ValueError, "iterations"),
    ({"iterations": 2.5}, TypeError, "iterations"),
    ({"bilateral_srgb": 0}, ValueError, "bilateral_srgb"),
    ({"gaussian_sxy": float("nan")}, ValueError, "gaussian_sxy"),
    ({"bilateral_sxy": "80"}, TypeError, "bilateral_sxy"),
    ({"bilateral_compat": "10"}, TypeError, "bilateral_compat"),
    ({"gaussian_compat": float("inf")}, ValueError, "gaussian_compat"),
    ({"gaussian_compat": torch.ones(2)}, ValueError, "one-element"),
    ({"bilateral_compat": torch.tensor(3)}, TypeError, "float tensor"),
])
def test_bad_parameters_are_explained(kwargs, error, match):
    with pytest.raises(error, match=match):
        dense_crf(np.zeros((8, 8, 3), np.uint8), np.ones((2, 8, 8), np.float32) / 2, **kwargs)


def test_numpy_numbers_and_negative_weights_are_accepted():
    image, _, probs = scene(12, 0, num_classes=3)
    plain = dense_crf(image, probs, backend="lattice", iterations=2, gaussian_sxy=3.0, bilateral_compat=-1.0)
    numpy = dense_crf(image, probs, backend="lattice", iterations=np.int64(2), gaussian_sxy=np.float32(3),
                      bilateral_compat=np.float64(-1))
    np.testing.assert_array_equal(numpy, plain)


@pytest.mark.parametrize("unary, backend, error, match", [
    (np.zeros((2, 8, 8), np.float32), "lattice", TypeError, "float tensor"),
    (torch.zeros(2, 8, 8, dtype=torch.long), "lattice", TypeError, "float tensor"),
    (torch.zeros(1, 2, 8, 8), "lattice", ValueError, r"\[C, H, W\]"),
    (torch.zeros(2, 8, 8), "pydensecrf", ValueError, "torch backends"),
    (torch.zeros(2, 8, 9), "exact", ValueError, "resize"),
])
def test_mean_field_explains_bad_input(unary, backend, error, match):
    with pytest.raises(error, match=match):
        mean_field(unary, np.zeros((8, 8, 3), np.uint8), backend=backend)


def test_missing_pydensecrf_names_the_crf_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pydensecrf.densecrf", None)  # makes the import fail
    assert not crf.pydensecrf_available()
    with pytest.raises(ImportError, match=r'segbook\[crf\]'):
        dense_crf(np.zeros((8, 8, 3), np.uint8), np.ones((2, 8, 8), np.float32) / 2, backend="pydensecrf")
    assert resolve_backend("auto") == "lattice"


def test_pydensecrf_refuses_gradients():
    if not HAS_PYDENSECRF:
        pytest.skip("pydensecrf not installed")
    p = torch.full((2, 8, 8), 0.5, requires_grad=True)
    with pytest.raises(ValueError, match="no gradients"):
        dense_crf(np.zeros((8, 8, 3), np.uint8), p, backend="pydensecrf")


def test_scene_helpers():
    image, labels = random_scene(32, 21, seed=5)
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8 and labels.shape == (32, 32)
    assert 0 <= labels.min() and labels.max() < 21 and len(np.unique(labels)) > 2
    again = random_scene(32, 21, seed=5)
    assert (again[0] == image).all() and (again[1] == labels).all()
    p = noisy_probs(labels, 21, seed=1)
    assert p.shape == (21, 32, 32) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(0), 1, atol=1e-5)
    assert 0.2 < (p.argmax(0) == labels).mean() < 1.0  # noisy, but related to the truth
    with pytest.raises(ValueError, match="labels"):
        noisy_probs(labels, 3)
    with pytest.raises(ValueError, match="size"):
        random_scene(4)


def test_package_front_exports_the_crf_and_no_test_inputs():
    assert len(crf.__all__) == len(set(crf.__all__))
    for name in crf.__all__:
        assert hasattr(crf, name), name
    for fixture in ("random_scene", "noisy_probs"):  # synthetic inputs live in tests/crf_fixtures.py
        assert not hasattr(crf, fixture)


# ------------------------------------------------------------------------------ device dispatch

def test_auto_dispatch():
    assert resolve_backend("auto", device="cuda") == "lattice"  # names only: needs no GPU
    assert resolve_backend("auto", requires_grad=True) == "lattice"
    assert resolve_backend("auto") == ("pydensecrf" if HAS_PYDENSECRF else "lattice")
    assert resolve_backend("exact", device="cuda") == "exact"


@needs_cuda
@pytest.mark.parametrize("backend", ["lattice", "exact"])
def test_cuda_matches_cpu(backend):
    image, _, probs = scene(32, 0)
    cpu = dense_crf(torch.from_numpy(image), torch.from_numpy(probs), backend=backend)
    gpu = dense_crf(torch.from_numpy(image), torch.from_numpy(probs).cuda(), backend=backend)
    assert gpu.device.type == "cuda"
    assert agreement(gpu.cpu(), cpu) >= 0.995
    auto = dense_crf(torch.from_numpy(image).cuda(), torch.from_numpy(probs).cuda())
    assert auto.device.type == "cuda"
