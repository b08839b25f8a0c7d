"""Fully connected (dense) CRF post-processing of segmentation probabilities.

The model (Kraehenbuehl & Koltun 2011). Every pixel ``i`` takes a label ``x_i`` among ``C``; the
energy of a labelling is

    E(x) = sum_i psi_u(x_i) + sum_{i<j} mu(x_i, x_j) k(f_i, f_j)

with unaries ``psi_u = -log p_i`` from the network's probabilities, the Potts compatibility
``mu(a, b) = [a != b]`` and a kernel that is a weighted sum of two Gaussians over pixel features::

    k(i, j) = w_g exp(-|p_i - p_j|^2 / (2 sxy_g^2))                                (smoothness)
            + w_b exp(-|p_i - p_j|^2 / (2 sxy_b^2) - |I_i - I_j|^2 / (2 srgb^2))   (appearance)

``p`` is the position (x, y) in pixels and ``I`` the colour (r, g, b) in 0..255. Nearby pixels of
similar colour are pushed towards the same label, so labels snap to image edges.

Mean-field inference approximates the posterior by a product ``Q(x) = prod_i Q_i(x_i)`` and
iterates (``Q`` starts as the softmax of ``-psi_u``, i.e. the network's own probabilities)::

    Q_i(l) <- softmax_l( -psi_u(i, l) + sum_m w_m sum_j kbar_m(i, j) Q_j(l) )

This is Potts written as a reward for agreeing labels, ``-w [a == b]``, which differs from
``w [a != b]`` by a per-pixel constant that the softmax removes. ``kbar_m`` is kernel ``m``
normalised as in pydensecrf's default ``NORMALIZE_SYMMETRIC``::

    kbar(i, j) = n_i k(i, j) n_j,     n_i = (sum_j k(i, j))^(-1/2)

The inner sum over all ``N`` pixels (the message passing) is the only expensive step: ``O(N^2)``
done literally, ``O(N)`` with a high-dimensional Gaussian filter. Backends:

* ``"pydensecrf"``: the authors' C++ code through the ``pydensecrf`` module (distribution
  ``pydensecrf2``; ``pip install "segbook[crf]"``). Both kernels are filtered on a permutohedral
  lattice (approximate Gaussians), CPU only, no gradients.
* ``"exact"``: the sums above computed literally in torch, in row chunks so memory stays bounded
  (``O(N^2)`` time: small images only). It is the reference in tests. CPU or CUDA, differentiable.
* ``"lattice"``: pure torch, memory linear in ``N``. The smoothness kernel is an exact separable
  Gaussian (two 1-D depthwise convolutions, taps to 5 sigma, see :func:`gaussian_blur`); the
  appearance kernel is filtered on a permutohedral lattice (Adams, Baek & Davis 2010; the
  algorithm and constants of Kraehenbuehl's C++ code) built with ``torch.unique`` /
  ``torch.searchsorted`` as the hash table; splat, blur and slice are sparse (CSR) matrix
  products. CPU or CUDA, differentiable with respect to the unaries and the kernel weights (not
  the image or the standard deviations, which only shape the lattice).
* ``"auto"``: ``"lattice"`` when gradients are needed or the probabilities are on a GPU, else
  ``"pydensecrf"`` when it is installed (the faster one on a 2-core CPU), else ``"lattice"``.
  With many CPU cores the lattice backend can be the faster one (see benchmarks/bench_crf.py).

The lattice (and so pydensecrf) only approximates the Gaussian: filtering an impulse gives a
bump whose width varies by about +-5% with direction and position. Refined labels still agree
with the exact backend on all but a small share of pixels (see tests/test_crf.py); where the
network's input is nearly tied between classes, mean field can tip either way, and the backends
differ most there.

Where this departs from the paper: the paper's sum runs over ``j != i``; pydensecrf's filtering
(and therefore every backend here, to agree with it) includes ``j = i``, and it normalises the
kernels symmetrically. Unaries use probabilities clipped below at ``1e-5`` (as
``pydensecrf.utils.unary_from_softmax``) so that ``-log p`` stays finite.

Defaults: 10 iterations, smoothness ``sxy=3, w=3``, appearance ``sxy=80, srgb=13, w=10``: the
values of pydensecrf's README example, common in DeepLab reimplementations. DeepLab (Chen
et al. 2015) fixed the smoothness kernel at ``w = sxy = 3`` and chose the appearance kernel's
three numbers by cross-validation on 100 held-out VOC val images; for other data and image sizes
they are a starting point to tune on held-out data, not a constant.

Where things are
----------------
* ``backend.py``: the front: :func:`dense_crf`, :func:`mean_field_iterates`, backend choice
  (:data:`BACKENDS`, :func:`resolve_backend`, :func:`pydensecrf_available`) and the pydensecrf bridge.
* ``meanfield.py``: the torch mean field (:func:`mean_field`), the pairwise message and the
  unaries (:func:`unary_from_probs`, :data:`PROB_FLOOR`).
* ``exact.py``: the kernels summed exactly: pixel features, the ``O(N^2)`` kernel of the
  ``"exact"`` backend and the separable :func:`gaussian_blur`.
* ``lattice.py``: :class:`PermutohedralLattice`, the appearance kernel of the ``"lattice"`` backend.
* ``checks.py``: input checks (image, probabilities, parameters) with errors that say how to fix them.

Synthetic scenes for tests and benchmarks (``random_scene``, ``noisy_probs``) live in
``tests/crf_fixtures.py``.
"""
from .backend import BACKENDS, dense_crf, mean_field_iterates, pydensecrf_available, resolve_backend
from .exact import gaussian_blur
from .lattice import PermutohedralLattice
from .meanfield import PROB_FLOOR, mean_field, unary_from_probs

__all__ = [
    "BACKENDS",
    "PROB_FLOOR",
    "dense_crf",
    "mean_field",
    "mean_field_iterates",
    "unary_from_probs",
    "resolve_backend",
    "pydensecrf_available",
    "PermutohedralLattice",
    "gaussian_blur",
]
