"""Tests for segbook.experiments.resnet_degradation: gradient norms of plain and residual twins."""
import numpy as np
import pytest
import torch

from segbook.analysis import grad_norms_at_init
from segbook.experiments.resnet_degradation import grad_norm_profiles
from segbook.models import cifar_resnet


def _batch():
    g = torch.Generator().manual_seed(0)
    return torch.rand(8, 3, 16, 16, generator=g), torch.randint(0, 10, (8,), generator=g)


def test_profiles_are_grad_norms_at_init_of_both_twins_from_one_seed():
    batch = _batch()
    norms = grad_norm_profiles(batch, depth=8, width=4, seed=5)
    assert list(norms) == ["plain", "ResNet"]
    for name, shortcuts in (("plain", False), ("ResNet", True)):
        torch.manual_seed(5)
        ref = [n for _, n in grad_norms_at_init(cifar_resnet(depth=8, width=4, shortcuts=shortcuts), batch)]
        assert isinstance(norms[name], np.ndarray) and norms[name].tolist() == ref
    assert len(norms["plain"]) == 8 and np.all(norms["plain"] > 0)   # 7 convs + the classifier
    # same weights, different graph: the shortcuts change the gradients
    assert not np.allclose(norms["plain"], norms["ResNet"])


def test_profiles_check_their_arguments():
    with pytest.raises(ValueError, match="batch must be a pair"):
        grad_norm_profiles(torch.zeros(2, 3, 8, 8), depth=8, width=4, seed=0)
    with pytest.raises(ValueError, match="depth"):
        grad_norm_profiles(_batch(), depth=0, width=4, seed=0)
