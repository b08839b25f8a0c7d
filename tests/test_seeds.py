"""segbook.seeds: spreads over seeds and one training per model and seed."""
import pytest
import torch
import torch.nn as nn

from segbook.seeds import SeedSpread, final_loss, fit_over_seeds, format_spread, spread
from segbook.train import History, fit


def test_spread_and_its_format():
    s = spread([0.75, 0.70, 0.80])
    assert s == SeedSpread(0.75, 0.70, 0.80, 3)
    assert s.width == pytest.approx(0.10)
    assert s.format() == "0.750 [0.700, 0.800]" and str(s) == s.format()
    assert spread([0.5]).format(".2f") == "0.50"             # one seed: no range to show
    assert format_spread([1, 2, 3], ".1f") == "2.0 [1.0, 3.0]"
    with pytest.raises(ValueError, match="at least one"):
        spread([])
    with pytest.raises(ValueError, match="infinite"):
        spread([0.1, float("inf")])
    # NaN: undefined on that seed (an absent class's IoU), left out; all NaN formats as a dash
    assert spread([0.2, float("nan"), 0.4]) == SeedSpread(pytest.approx(0.3), 0.2, 0.4, 2)
    assert spread([float("nan")]).n == 0 and spread([float("nan")] * 2).format() == "\u2014"


def test_final_loss_is_the_mean_of_the_last_fifth():
    h = History(task="classification", step_loss=[10.0] * 8 + [1.0, 3.0])
    assert final_loss(h) == 2.0
    assert final_loss(h, fraction=1.0) == pytest.approx(8.4)
    with pytest.raises(ValueError, match="fraction"):
        final_loss(h, fraction=0)
    with pytest.raises(ValueError, match="no step losses"):
        final_loss(History(task="classification"))


def test_final_loss_over_a_number_of_steps():
    h = History(task="classification", step_loss=[10.0] * 8 + [1.0, 3.0])
    assert final_loss(h, steps=1) == 3.0 and final_loss(h, steps=3) == pytest.approx(14 / 3)
    assert final_loss(h, steps=50) == pytest.approx(8.4)      # more steps than trained: all of them
    with pytest.raises(ValueError, match="steps"):
        final_loss(h, steps=0)


def test_direction_on_seeds_words_the_sign_of_every_difference():
    from segbook.seeds import direction_on_seeds

    assert direction_on_seeds([0.1, 0.2], "the score") == "raised the score on every seed"
    assert direction_on_seeds([-0.1, -0.01], "the score") == "lowered the score on every seed"
    assert direction_on_seeds([0.0, 0.0], "x") == "left x unchanged on every seed"
    assert direction_on_seeds([0.1, 0.0], "x") == "raised x on some seeds and left it unchanged on others"
    assert direction_on_seeds([0.0, -0.1], "x") == "lowered x on some seeds and left it unchanged on others"
    assert direction_on_seeds([0.1, -0.2], "x") == "raised x on some seeds and lowered it on others"
    with pytest.raises(ValueError, match="empty"):
        direction_on_seeds([], "x")


def _data(seed):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, 3, 8, 8, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(4)]


def _net():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))


def test_fit_over_seeds_equals_one_fit_per_seed():
    val = _data(99)
    kw = dict(task="classification", num_classes=3, epochs=1, lr=1e-2, device="cpu", progress=False, log=False)
    runs = fit_over_seeds({"a": _net, "b": _net}, _data, [3, 1003], val_loader=val, workers=2, **kw)
    assert list(runs) == ["a", "b"] and [r.seed for r in runs["a"]] == [3, 1003]
    for r in runs["a"]:
        torch.manual_seed(r.seed)
        ref = _net()
        h = fit(ref, _data(r.seed), val, seed=r.seed, **kw)
        assert h.step_loss == r.history.step_loss                     # same numbers as a plain fit
        assert r.final_loss == final_loss(h) and r.val["accuracy"] == h.final["accuracy"]
        assert all(torch.equal(p, q) for p, q in zip(ref.state_dict().values(), r.model.state_dict().values()))
    # two builders of one architecture start from the same weights, so with the same batches they agree
    assert runs["a"][0].history.step_loss == runs["b"][0].history.step_loss
    assert runs["a"][0].history.step_loss != runs["a"][1].history.step_loss


def test_fit_over_seeds_rejects_bad_arguments():
    with pytest.raises(TypeError, match="builders"):
        fit_over_seeds({}, _data, [0], task="classification", epochs=1)
    with pytest.raises(ValueError, match="seeds is empty"):
        fit_over_seeds({"a": _net}, _data, [], task="classification", epochs=1)
    with pytest.raises(TypeError, match="sets seed"):
        fit_over_seeds({"a": _net}, _data, [0], task="classification", epochs=1, seed=3)


def test_fit_over_seeds_gives_each_builder_its_own_data_when_given_mappings():
    # e.g. chapter 1's EfficientNets, each at its own resolution: train and validation data per builder
    kw = dict(task="classification", num_classes=3, epochs=1, lr=1e-2, device="cpu", progress=False, log=False)
    small = lambda s: _data(s)                                            # noqa: E731
    large = lambda s: [(torch.nn.functional.interpolate(x, size=12), y) for x, y in _data(s + 7)]  # noqa: E731
    vals = {"a": _data(99), "b": lambda s: large(s + 50)}
    runs = fit_over_seeds({"a": _net, "b": _net}, {"a": small, "b": large}, [3], val_loader=vals,
                          workers=2, costs={"a": 1.0, "b": 2.0}, **kw)
    for name, data, val in (("a", small(3), vals["a"]), ("b", large(3), large(53))):
        torch.manual_seed(3)
        ref = _net()
        h = fit(ref, data, val, seed=3, **kw)
        assert runs[name][0].history.step_loss == h.step_loss, name
        assert runs[name][0].val["accuracy"] == h.final["accuracy"] and runs[name][0].val["loss"] == h.final["loss"]
    assert runs["a"][0].history.step_loss != runs["b"][0].history.step_loss   # the mapping is honoured
    with pytest.raises(ValueError, match=r"make_train_loader has entries for \['a'\] but the builders are \['a', 'b'\]"):
        fit_over_seeds({"a": _net, "b": _net}, {"a": small}, [0], **kw)
    with pytest.raises(ValueError, match=r"val_loader has entries for \['b'\]"):
        fit_over_seeds({"a": _net, "b": _net}, small, [0], val_loader={"b": vals["a"]}, **kw)


def test_accuracy_noise_and_paired_verdict():
    from segbook.seeds import accuracy_noise, paired_verdict
    assert accuracy_noise(0.5, 1000) == pytest.approx((2 * 0.25 / 1000) ** 0.5)
    assert accuracy_noise(1.0, 10) == 0.0
    n = 0.01
    assert paired_verdict([0.05, 0.03, 0.021], n) == "higher"
    assert paired_verdict([-0.05, -0.03], n) == "lower"
    assert paired_verdict([0.02, -0.02, 0.0], n) == "none"         # at the bar counts as within
    assert paired_verdict([0.05, 0.01], n) == "mixed"              # one seed clear, one not
    assert paired_verdict([0.05, -0.05], n) == "mixed"
    assert paired_verdict([0.005], 0.0) == "higher"
    with pytest.raises(ValueError, match="one per seed"):
        paired_verdict([], n)
    with pytest.raises(ValueError, match="noise"):
        paired_verdict([0.1], -1)
    with pytest.raises(ValueError, match="accuracy"):
        accuracy_noise(1.5, 10)
    with pytest.raises(ValueError, match="positive number of images"):
        accuracy_noise(0.5, 0)
