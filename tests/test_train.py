"""Tests for segbook.train: fit / evaluate / predict and History, on tiny CPU problems."""
from __future__ import annotations

import copy
import math
import re

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from segbook.constants import TASKS
from segbook.data import make_loader
from segbook.train import (OPTIMIZERS, History, class_balance_weights, evaluate, fit, lr_factor, make_optimizer, predict,
                           train_one_epoch)

QUIET = dict(progress=False, log=False)


# ---------------------------------------------------------------------------------------------
# tiny problems and models
# ---------------------------------------------------------------------------------------------
def cls_data(n=48, seed=0):
    """3-class images [n, 3, 4, 4]: the label is the brightest channel."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = 0.5 * torch.rand(n, 3, 4, 4, generator=g)
    x[torch.arange(n), y] += 0.5
    return x, y


def seg_data(n=32, seed=0, size=8):
    """2-class masks: a pixel is class 1 where channel 0 is bright."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, size, size, generator=g)
    y = (x[:, 0] > 0.5).long()
    return x, y


def batches(x, y, bs):
    return list(zip(x.split(bs), y.split(bs)))


def cls_net(seed=0, dropout=0.0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(48, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, 3))


def seg_net(seed=0, k=2):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, k, 1))


class AuxSeg(nn.Module):
    """Returns (main, aux) in train mode, main alone in eval mode; aux at half resolution."""

    def __init__(self, k=2):
        super().__init__()
        torch.manual_seed(0)
        self.main = nn.Conv2d(3, k, 3, padding=1)
        self.aux = nn.Conv2d(3, k, 1)

    def forward(self, x):
        main = self.main(x)
        if self.training:
            return main, self.aux(F.avg_pool2d(x, 2))
        return main


class AuxCls(nn.Module):
    """A classifier with two auxiliary heads in train mode."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.main = nn.Linear(48, 3)
        self.aux1 = nn.Linear(48, 3)
        self.aux2 = nn.Linear(48, 3)

    def forward(self, x):
        x = x.flatten(1)
        if self.training:
            return self.main(x), self.aux1(x), self.aux2(x)
        return self.main(x)


class Oracle(nn.Module):
    """Logits read straight from the input, so metrics are known in advance.

    Classification: logits = x[:, :, 0, 0]. Segmentation: logits = x[:, :k] (the full map).
    Records the grad/inference state of every forward call.
    """

    def __init__(self, task, k=3):
        super().__init__()
        self.task, self.k = task, k
        self.dummy = nn.Parameter(torch.zeros(()))
        self.calls = []

    def forward(self, x):
        self.calls.append(dict(grad=torch.is_grad_enabled(), inference=torch.is_inference_mode_enabled(),
                               training=self.training))
        out = x[:, :, 0, 0] if self.task == "classification" else x[:, :self.k]
        return out + 0 * self.dummy


# ---------------------------------------------------------------------------------------------
# fit: learning, History, determinism
# ---------------------------------------------------------------------------------------------
def test_fit_classification_reduces_loss():
    x, y = cls_data()
    model = cls_net()
    train = batches(x, y, 8)
    hist = fit(model, train, train, task="classification", num_classes=3, epochs=2, lr=2e-2, **QUIET)
    assert isinstance(hist, History) and hist.task == "classification"
    assert hist.train_loss[-1] < hist.train_loss[0]
    assert sum(hist.step_loss[-3:]) < sum(hist.step_loss[:3])
    assert hist.val[-1]["loss"] < math.log(3)  # better than uniform guessing
    assert hist.val[-1]["accuracy"] > 0.5
    assert not model.training  # fit leaves the model in eval mode


def test_fit_segmentation_reduces_loss():
    x, y = seg_data()
    model = seg_net()
    train = make_loader(torch.utils.data.TensorDataset(x, y), batch_size=8, shuffle=True, seed=0)
    val = batches(x, y, 16)
    before = evaluate(model, val, task="segmentation", num_classes=2)
    hist = fit(model, train, val, task="segmentation", num_classes=2, epochs=3, lr=2e-2, **QUIET)
    assert hist.train_loss[-1] < hist.train_loss[0]
    assert hist.step_loss[-1] < hist.step_loss[0]
    v = hist.val[-1]
    assert set(v) == {"loss", "miou", "pixel_acc", "boundary_f1", "iou_per_class", "boundary_f1_per_class"}
    assert v["loss"] < before["loss"]
    assert v["pixel_acc"] > max(0.6, before["pixel_acc"])
    assert 0.0 <= v["boundary_f1"] <= 1.0


def test_fit_sgd_and_clip_grad():
    x, y = cls_data()
    hist = fit(cls_net(), batches(x, y, 8), task="classification", epochs=2, lr=0.1,
               optimizer="sgd", clip_grad=1.0, schedule=None, **QUIET)
    assert hist.train_loss[-1] < hist.train_loss[0]


def test_fit_uses_the_optimizer_it_is_asked_for():
    """SGD (Nesterov) and AdamW take different steps from the same start: one step each, replayed by hand."""
    x, y = cls_data(n=8)
    data = batches(x, y, 8)
    start = cls_net()
    loss = F.cross_entropy(start(x), y)
    grads = torch.autograd.grad(loss, list(start.parameters()))
    nets = {}
    for name in ("sgd", "adamw", "adam"):
        nets[name] = copy.deepcopy(start)
        fit(nets[name], data, task="classification", epochs=1, lr=0.1, optimizer=name, momentum=0.9,
            weight_decay=0.0, schedule=None, seed=None, **QUIET)
    for p, g, q_sgd, q_adam in zip(start.parameters(), grads, nets["sgd"].parameters(), nets["adamw"].parameters()):
        # Nesterov SGD's first step: buf = g, update = g + momentum * buf = 1.9 g
        torch.testing.assert_close(q_sgd, p - 0.1 * 1.9 * g)
        # Adam's first step moves every weight with a gradient by lr (times sign(g))
        moved = g.abs() > 1e-4
        torch.testing.assert_close((q_adam - p)[moved].abs(), torch.full_like(p[moved], 0.1), rtol=1e-3, atol=1e-5)
    assert all(torch.equal(a, b) for a, b in zip(nets["adam"].parameters(), nets["adamw"].parameters()))  # wd = 0


def test_fit_clip_grad_bounds_the_update():
    """With plain SGD one step moves the weights by lr * g clipped to norm clip_grad."""
    x, y = cls_data(n=8)
    start = cls_net()
    grads = torch.autograd.grad(F.cross_entropy(start(x), y), list(start.parameters()))
    norm = torch.sqrt(sum((g ** 2).sum() for g in grads))
    clip = float(norm) / 10
    for clip_grad, scale in ((None, 1.0), (clip, clip / float(norm))):
        net = copy.deepcopy(start)
        fit(net, batches(x, y, 8), task="classification", epochs=1, lr=0.5, optimizer="sgd", momentum=0.0,
            weight_decay=0.0, schedule=None, clip_grad=clip_grad, seed=None, **QUIET)
        with torch.no_grad():
            step = torch.sqrt(sum(((q - p) ** 2).sum() for p, q in zip(start.parameters(), net.parameters())))
        assert float(step) == pytest.approx(0.5 * float(norm) * scale, rel=1e-4)


def test_history_fields_lengths():
    x, y = cls_data()
    train = batches(x, y, 8)  # 6 steps per epoch
    hist = fit(cls_net(), train, train[:2], task="classification", epochs=3, **QUIET)
    assert hist.epochs == 3
    assert len(hist.train_loss) == len(hist.train_accuracy) == len(hist.val) == len(hist.seconds) == 3
    assert len(hist.step_loss) == 3 * 6
    assert all(type(v) is float for v in hist.step_loss + hist.train_loss + hist.train_accuracy)
    assert all(s > 0 for s in hist.seconds)
    assert hist.total_seconds == pytest.approx(sum(hist.seconds))
    assert all(0.0 <= a <= 1.0 for a in hist.train_accuracy)
    # the epoch loss is the mean of that epoch's step losses
    for e in range(3):
        assert hist.train_loss[e] == pytest.approx(sum(hist.step_loss[6 * e:6 * e + 6]) / 6, rel=1e-6)
    assert hist.final == hist.val[-1] and hist.final is not hist.val[-1]
    assert set(hist.final) == {"loss", "accuracy"}


def test_history_without_validation():
    x, y = cls_data()
    hist = fit(cls_net(), batches(x, y, 16), task="classification", epochs=1, **QUIET)
    assert hist.val == [] and hist.final == {}
    assert len(hist.train_loss) == 1 and len(hist.step_loss) == 3


def test_train_metrics_match_evaluate_when_nothing_changes():
    """With lr=0 the weights stay put: the epoch's train loss/accuracy equal evaluate()'s."""
    x, y = cls_data()
    model = cls_net()
    before = copy.deepcopy(model.state_dict())
    train = batches(x, y, 8)  # equal batch sizes: mean of batch means = overall mean
    hist = fit(model, train, task="classification", epochs=1, lr=0.0, **QUIET)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    ev = evaluate(model, train, task="classification")
    assert hist.train_loss[0] == pytest.approx(ev["loss"], rel=1e-5)
    assert hist.train_accuracy[0] == pytest.approx(ev["accuracy"])


def test_fit_is_deterministic():
    x, y = cls_data()
    init = cls_net(seed=1, dropout=0.3)  # dropout: the seed must fix its masks too
    runs = []
    for _ in range(2):
        model = copy.deepcopy(init)
        train = make_loader(torch.utils.data.TensorDataset(x, y), batch_size=8, shuffle=True, seed=4)
        hist = fit(model, train, task="classification", epochs=2, lr=1e-2, seed=7, **QUIET)
        runs.append((hist.step_loss, model.state_dict()))
    (loss_a, sd_a), (loss_b, sd_b) = runs
    assert loss_a == loss_b  # exactly equal, step by step
    for k in sd_a:
        assert torch.equal(sd_a[k], sd_b[k])


def test_fit_seed_changes_dropout_draws():
    x, y = cls_data()
    init = cls_net(seed=1, dropout=0.3)
    losses = []
    for seed in (7, 8):
        hist = fit(copy.deepcopy(init), batches(x, y, 8), task="classification", epochs=1, seed=seed, **QUIET)
        losses.append(hist.step_loss)
    assert losses[0] != losses[1]


# ---------------------------------------------------------------------------------------------
# auxiliary heads
# ---------------------------------------------------------------------------------------------
def test_aux_loss_segmentation_first_step():
    x, y = seg_data(n=16)
    train = batches(x, y, 8)
    model = AuxSeg()
    ref = copy.deepcopy(model).train()
    with torch.no_grad():
        main, aux = ref(train[0][0])
        assert aux.shape[-2:] == (4, 4)  # coarser: fit must upsample it to the mask size
        aux_up = F.interpolate(aux, size=(8, 8), mode="bilinear", align_corners=False)
        ce_main = F.cross_entropy(main, train[0][1])
        ce_aux = F.cross_entropy(aux_up, train[0][1])
    hist = fit(model, train, task="segmentation", num_classes=2, epochs=1, schedule=None, **QUIET)
    assert ce_aux > 0
    assert hist.step_loss[0] == pytest.approx(float(ce_main + 0.3 * ce_aux), rel=1e-6)
    assert hist.step_loss[0] != pytest.approx(float(ce_main), rel=1e-3)


def test_aux_loss_classification_two_heads_and_custom_weight():
    x, y = cls_data(n=16)
    train = batches(x, y, 8)
    for weight in (0.3, 0.5, 0.0):
        model = AuxCls()
        ref = copy.deepcopy(model).train()
        with torch.no_grad():
            m, a1, a2 = ref(train[0][0])
            t = train[0][1]
            expected = F.cross_entropy(m, t) + weight * (F.cross_entropy(a1, t) + F.cross_entropy(a2, t))
        hist = fit(model, train, task="classification", epochs=1, aux_weight=weight, **QUIET)
        assert hist.step_loss[0] == pytest.approx(float(expected), rel=1e-6), weight


def test_aux_model_evaluate_and_predict_use_main_only():
    x, y = seg_data(n=8)
    model = AuxSeg()
    model.train()
    out = evaluate(model, batches(x, y, 4), task="segmentation", num_classes=2)
    assert model.training  # evaluate restores the mode
    model.eval()
    with torch.no_grad():
        expected = F.cross_entropy(model(x), y)
    assert out["loss"] == pytest.approx(float(expected), rel=1e-5)
    model.train()
    assert predict(model, x).shape == (8, 8, 8)


# ---------------------------------------------------------------------------------------------
# evaluate
# ---------------------------------------------------------------------------------------------
def test_evaluate_classification_by_hand():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 3, 2, 2, generator=g)
    y = torch.randint(0, 3, (8,), generator=g)
    loader = [(x[:5], y[:5]), (x[5:], y[5:])]  # unequal batches: the mean is over samples
    model = Oracle("classification")
    out = evaluate(model, loader, task="classification")
    logits = x[:, :, 0, 0]
    assert set(out) == {"loss", "accuracy"}
    assert out["loss"] == pytest.approx(float(F.cross_entropy(logits, y)), rel=1e-6)
    assert out["accuracy"] == pytest.approx(float((logits.argmax(1) == y).float().mean()))


def test_evaluate_runs_under_inference_mode_and_restores_mode():
    x, y = cls_data(n=8)
    model = Oracle("classification")
    model.train()
    evaluate(model, batches(x, y, 4), task="classification")
    assert len(model.calls) == 2
    for call in model.calls:
        assert call == dict(grad=False, inference=True, training=False)
    assert model.training
    model.eval()
    evaluate(model, batches(x, y, 4), task="classification")
    assert not model.training


def test_evaluate_segmentation_perfect_and_ignore_index():
    g = torch.Generator().manual_seed(0)
    target = torch.zeros(4, 8, 8, dtype=torch.long)
    target[:, 2:6, 2:6] = 1
    target[:, :, 6:] = 2
    x = F.one_hot(target, 3).permute(0, 3, 1, 2).float() * 4.0  # oracle logits
    x = x + 0.5 * torch.rand(x.shape, generator=g)  # not a trivially zero loss
    target_ign = target.clone()
    target_ign[:, 0, :] = 255
    out = evaluate(Oracle("segmentation"), [(x, target_ign)], task="segmentation", num_classes=3)
    assert set(out) == {"loss", "miou", "pixel_acc", "boundary_f1", "iou_per_class", "boundary_f1_per_class"}
    assert out["miou"] == 1.0 and out["pixel_acc"] == 1.0 and out["boundary_f1"] == 1.0
    assert out["iou_per_class"] == [1.0, 1.0, 1.0]
    expected = F.cross_entropy(x[:, :, 1:], target[:, 1:])  # the ignored row does not count
    assert out["loss"] == pytest.approx(float(expected), rel=1e-6)


def test_evaluate_segmentation_wrong_prediction_scores_lower():
    x, y = seg_data(n=8)
    out_good = evaluate(Oracle("segmentation", k=2), [(torch.stack([1 - x[:, 0], x[:, 0]], 1), y)],
                        task="segmentation", num_classes=2)
    out_bad = evaluate(Oracle("segmentation", k=2), [(torch.stack([x[:, 0], 1 - x[:, 0]], 1), y)],
                       task="segmentation", num_classes=2)
    assert out_good["miou"] == 1.0
    assert out_bad["miou"] == 0.0 and out_bad["pixel_acc"] == 0.0
    assert out_bad["loss"] > out_good["loss"]


# ---------------------------------------------------------------------------------------------
# predict
# ---------------------------------------------------------------------------------------------
def test_predict_shapes_and_values():
    x, _ = cls_data(n=10)
    model = Oracle("classification")
    labels = predict(model, x)
    assert labels.shape == (10,) and labels.dtype == torch.int64 and labels.device.type == "cpu"
    assert torch.equal(labels, x[:, :, 0, 0].argmax(1))
    assert torch.equal(predict(model, x, batch_size=3), labels)
    assert all(c["inference"] and not c["grad"] and not c["training"] for c in model.calls)
    assert model.training  # restored

    xs, _ = seg_data(n=5)
    seg = seg_net(k=4)
    masks = predict(seg, xs, batch_size=2)
    assert masks.shape == (5, 8, 8) and masks.dtype == torch.int64
    assert int(masks.max()) < 4
    seg.eval()
    with torch.no_grad():
        assert torch.equal(masks, seg(xs).argmax(1))


# ---------------------------------------------------------------------------------------------
# History.series
# ---------------------------------------------------------------------------------------------
def test_history_series():
    h = History(task="segmentation", train_loss=[1.0, 0.5], train_accuracy=[0.4, 0.6],
                step_loss=[1.2, 0.8, 0.6, 0.4], seconds=[0.1, 0.2],
                val=[{"loss": 0.9, "miou": 0.3}, {"loss": 0.7, "miou": 0.4}])
    assert h.series("train_loss") == [1.0, 0.5]
    assert h.series("train_accuracy") == [0.4, 0.6]
    assert h.series("step_loss") == [1.2, 0.8, 0.6, 0.4]
    assert h.series("seconds") == [0.1, 0.2]
    assert h.series("val.miou") == [0.3, 0.4]
    assert h.series("val.loss") == [0.9, 0.7]
    s = h.series("train_loss")
    s.append(99)
    assert h.train_loss == [1.0, 0.5]  # a copy
    with pytest.raises(KeyError, match=r"no validation metric 'accuracy'; available: \['loss', 'miou'\]"):
        h.series("val.accuracy")
    with pytest.raises(KeyError, match="unknown series 'loss'"):
        h.series("loss")
    with pytest.raises(KeyError, match="available: \\[\\]"):
        History(task="classification").series("val.loss")
    assert h.epochs == 2 and h.total_seconds == pytest.approx(0.3)


def test_fit_logs_one_line_per_epoch(capsys):
    x, y = cls_data(n=16)
    fit(cls_net(), batches(x, y, 8), batches(x, y, 8), task="classification", epochs=2,
        progress=False, log=True, desc="tiny")
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("tiny epoch 1/2  loss ")
    assert "val accuracy" in lines[1] and lines[1].endswith(" s)")


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------
def test_fit_empty_loader():
    with pytest.raises(ValueError, match="train_loader is empty"):
        fit(cls_net(), [], task="classification", epochs=1, **QUIET)


def test_fit_loader_without_length():
    x, y = cls_data(n=8)
    with pytest.raises(TypeError, match="must have a length"):
        fit(cls_net(), iter(batches(x, y, 4)), task="classification", epochs=1, **QUIET)


def test_fit_segmentation_logits_wrong_size():
    x, y = seg_data(n=8)
    torch.manual_seed(0)
    coarse = nn.Conv2d(3, 2, 3, stride=2, padding=1)  # 8x8 -> 4x4, not resized
    with pytest.raises(ValueError, match=r"logits are \(4, 4\) but masks are \(8, 8\).*F\.interpolate"):
        fit(coarse, batches(x, y, 4), task="segmentation", num_classes=2, epochs=1, **QUIET)


def test_fit_wrong_number_of_classes():
    x, y = seg_data(n=8)
    with pytest.raises(ValueError, match="the model outputs 2 classes but num_classes=3"):
        fit(seg_net(k=2), batches(x, y, 4), task="segmentation", num_classes=3, epochs=1, **QUIET)


def test_fit_wrong_logits_rank():
    x, y = seg_data(n=8)
    with pytest.raises(ValueError, match=r"classification expects logits \[N, K\] and targets \[N\]"):
        fit(seg_net(), batches(x, y, 4), task="classification", epochs=1, **QUIET)
    xc, yc = cls_data(n=8)
    with pytest.raises(ValueError, match=r"segmentation expects logits \[N, K, H, W\]"):
        fit(cls_net(), batches(xc, yc, 4), task="segmentation", epochs=1, **QUIET)


@pytest.mark.parametrize("task", ["detection", "Segmentation", None])
def test_fit_bad_task(task):
    x, y = cls_data(n=8)
    with pytest.raises(ValueError, match=re.escape(f"task must be one of {(*TASKS, 'regression')}, got {task!r}")):
        fit(cls_net(), batches(x, y, 4), task=task, epochs=1, **QUIET)


def test_fit_bad_optimizer_and_schedule():
    x, y = cls_data(n=8)
    with pytest.raises(ValueError, match=re.escape(f"optimizer must be one of {OPTIMIZERS}, got 'lamb'")):
        fit(cls_net(), batches(x, y, 4), task="classification", epochs=1, optimizer="lamb", **QUIET)
    with pytest.raises(ValueError, match="schedule must be 'cosine', 'poly' or None"):
        fit(cls_net(), batches(x, y, 4), task="classification", epochs=1, schedule="step", **QUIET)


@pytest.mark.parametrize("epochs, error", [(0, ValueError), (-1, ValueError), (1.5, TypeError), (True, TypeError),
                                           ("2", TypeError)])
def test_fit_bad_epochs(epochs, error):
    x, y = cls_data(n=8)
    with pytest.raises(error, match="epochs must be a positive int"):
        fit(cls_net(), batches(x, y, 4), task="classification", epochs=epochs, **QUIET)


def test_fit_float_targets():
    x, y = cls_data(n=8)
    with pytest.raises(TypeError, match="targets must be integer class indices"):
        fit(cls_net(), batches(x, y.float(), 4), task="classification", epochs=1, **QUIET)
    xs, ys = seg_data(n=8)
    with pytest.raises(TypeError, match="targets must be integer class indices"):
        fit(seg_net(), batches(xs, ys.float(), 4), task="segmentation", num_classes=2, epochs=1, **QUIET)


def test_fit_segmentation_validation_needs_num_classes():
    x, y = seg_data(n=8)
    with pytest.raises(ValueError, match="need num_classes"):
        fit(seg_net(), batches(x, y, 4), batches(x, y, 4), task="segmentation", epochs=1, **QUIET)


def test_fit_model_returning_garbage():
    class Bad(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return {"out": x}

    x, y = cls_data(n=8)
    with pytest.raises(TypeError, match="must return logits"):
        fit(Bad(), batches(x, y, 4), task="classification", epochs=1, **QUIET)


def test_fit_non_finite_loss():
    class Exploding(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(48, 3)

        def forward(self, x):
            return self.lin(x.flatten(1)) * float("inf")

    x, y = cls_data(n=8)
    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        fit(Exploding(), batches(x, y, 4), task="classification", epochs=1, **QUIET)


def test_evaluate_errors():
    x, y = seg_data(n=4)
    with pytest.raises(ValueError, match="need num_classes"):
        evaluate(seg_net(), batches(x, y, 2), task="segmentation")
    with pytest.raises(ValueError, match="task must be one of"):
        evaluate(seg_net(), batches(x, y, 2), task="regression")
    with pytest.raises(ValueError, match="yielded no"):
        evaluate(cls_net(), [], task="classification")
    with pytest.raises(ValueError, match="yielded no"):
        evaluate(seg_net(), [(x, torch.full_like(y, 255))], task="segmentation", num_classes=2)
    with pytest.raises(ValueError, match="outputs 2 classes but num_classes=5"):
        evaluate(seg_net(), batches(x, y, 2), task="segmentation", num_classes=5)
    with pytest.raises(TypeError, match="targets must be integer"):
        evaluate(cls_net(), [(torch.rand(2, 3, 4, 4), torch.zeros(2))], task="classification")


def test_predict_errors():
    model = cls_net()
    with pytest.raises(ValueError, match=r"images must be a float tensor \[N, 3, H, W\]"):
        predict(model, torch.rand(3, 4, 4))
    with pytest.raises(ValueError, match="images must be"):
        predict(model, [[0.0]])
    with pytest.raises(TypeError, match="images must be float"):
        predict(model, torch.zeros(2, 3, 4, 4, dtype=torch.uint8))


class _LyingLoader:
    """Reports a length but yields nothing (a broken custom loader)."""

    def __len__(self):
        return 3

    def __iter__(self):
        return iter(())


def test_fit_rejects_a_loader_that_yields_nothing():
    import torch.nn as nn
    from segbook.train import fit

    with pytest.raises(ValueError, match="yielded no usable batches"):
        fit(nn.Linear(2, 2), _LyingLoader(), task="classification", epochs=1, progress=False, log=False)


@pytest.mark.parametrize("bad", [7, -1])
def test_labels_out_of_range_get_a_clear_error_in_fit_and_evaluate(bad):
    import torch.nn as nn

    model = nn.Conv2d(3, 6, 1)
    masks = torch.zeros(2, 8, 8, dtype=torch.long)
    masks[0, 0, 0] = bad
    loader = [(torch.rand(2, 3, 8, 8), masks)]
    with pytest.raises(ValueError, match=rf"labels \[{bad}\] are outside \[0, 6\)"):
        fit(model, loader, task="segmentation", num_classes=6, epochs=1, progress=False, log=False)
    with pytest.raises(ValueError, match="ignore index 255"):
        evaluate(model, loader, task="segmentation", num_classes=6)
    masks[0, 0, 0] = 255  # the ignore index is allowed
    evaluate(model, loader, task="segmentation", num_classes=6)


def test_predict_and_evaluate_under_cpu_autocast_return_float_metrics():
    from segbook.models import fcn8s
    from segbook.train import evaluate, predict
    torch.manual_seed(0)
    model = fcn8s(num_classes=3, width=4)
    x = torch.rand(2, 3, 32, 32)
    y = torch.randint(0, 3, (2, 32, 32))
    labels = predict(model, x, amp=True, channels_last=True)
    assert labels.shape == (2, 32, 32) and labels.dtype == torch.int64
    out = evaluate(model, [(x, y)], task="segmentation", num_classes=3, amp=True, channels_last=True)
    assert isinstance(out["miou"], float) and isinstance(out["loss"], float) and out["loss"] > 0


def test_fit_skips_a_last_batch_of_one_for_batchnorm_models():
    from segbook.models import fcn8s
    from segbook.train import fit
    torch.manual_seed(0)
    model = fcn8s(num_classes=3, width=4)
    x, y = torch.rand(3, 3, 32, 32), torch.randint(0, 3, (3, 32, 32))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=2)  # 2 + 1
    with pytest.warns(RuntimeWarning, match="batch of one image"):
        hist = fit(model, loader, task="segmentation", num_classes=3, epochs=1, progress=False, log=False)
    assert len(hist.step_loss) == 1


def test_fit_checks_labels_on_the_cpu_before_the_model_runs():
    from segbook.train import fit

    class Spy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 3)
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            return self.lin(x.flatten(1)[:, :4])

    spy = Spy()
    batch = [(torch.rand(2, 1, 2, 2), torch.tensor([0, 7]))]
    with pytest.raises(ValueError, match=r"labels \[7\]"):
        fit(spy, batch, task="classification", num_classes=3, epochs=1, progress=False, log=False)
    assert spy.calls == 0


# ---------------------------------------------------------------------------------------------
# class weights
# ---------------------------------------------------------------------------------------------
def test_class_balance_weights_median_frequency():
    # shares: class 0 0.6, class 1 0.3, class 2 0.1; median 0.3 -> weights 0.5, 1, 3
    masks = torch.tensor([0] * 6 + [1] * 3 + [2]).view(1, 2, 5)
    w = class_balance_weights(masks, 3)
    assert w.dtype == torch.float32 and w.shape == (3,)
    assert torch.allclose(w, torch.tensor([0.5, 1.0, 3.0]))
    assert torch.allclose(class_balance_weights(masks, 3, power=0.5), torch.tensor([0.5, 1.0, 3.0]).sqrt())
    # weighted by w, every class carries the same total weight: f_c * w_c = median share
    freq = torch.tensor([0.6, 0.3, 0.1])
    assert torch.allclose(freq * w, torch.full((3,), 0.3))


def test_class_balance_weights_ignore_and_absent_classes():
    masks = torch.tensor([[0, 0, 1, 255, 255]])
    w = class_balance_weights(masks, 4)
    # present: 0 (2/3) and 1 (1/3); torch.median takes the lower middle value, 1/3
    assert w[2] == 0 and w[3] == 0
    assert torch.allclose(w[:2], torch.tensor([0.5, 1.0]))


@pytest.mark.parametrize("masks, k, kw, match", [
    (torch.rand(2, 4, 4), 3, {}, "integer label tensor"),
    (torch.full((2, 4), 255), 3, {}, "no labelled pixel"),
    (torch.tensor([[0, 5]]), 3, {}, r"\[0, 3\)"),
    (torch.tensor([[0, 1]]), 0, {}, "num_classes"),
    (torch.tensor([[0, 1]]), 2, {"power": -1}, "power"),
])
def test_class_balance_weights_bad_input(masks, k, kw, match):
    with pytest.raises(ValueError, match=match):
        class_balance_weights(masks, k, **kw)


def test_fit_class_weights_weight_the_loss():
    x, y = seg_data(n=8)
    train = batches(x, y, 8)
    weights = torch.tensor([1.0, 4.0])
    model = seg_net()
    with torch.no_grad():
        expected = F.cross_entropy(copy.deepcopy(model)(train[0][0]), train[0][1], weight=weights)
        plain = F.cross_entropy(copy.deepcopy(model)(train[0][0]), train[0][1])
    hist = fit(model, train, task="segmentation", num_classes=2, epochs=1, schedule=None, class_weights=weights, **QUIET)
    assert hist.step_loss[0] == pytest.approx(float(expected), rel=1e-6)
    assert hist.step_loss[0] != pytest.approx(float(plain), rel=1e-3)


@pytest.mark.parametrize("weights", [torch.tensor([1, 2]), torch.ones(3), torch.tensor([1.0, -1.0]),
                                     torch.tensor([1.0, float("nan")]), [1.0, 2.0]])
def test_fit_bad_class_weights(weights):
    x, y = seg_data(n=8)
    with pytest.raises(ValueError, match="class_weights"):
        fit(seg_net(), batches(x, y, 8), task="segmentation", num_classes=2, epochs=1, class_weights=weights, **QUIET)

# learning-rate schedules and warm-up
# ---------------------------------------------------------------------------------------------
def test_lr_factor_values():
    assert lr_factor(None, 10) is None
    cos = lr_factor("cosine", 10)
    assert cos(0) == 1.0 and cos(5) == pytest.approx(0.5) and cos(10) == pytest.approx(0.0)
    poly = lr_factor("poly", 10)
    assert poly(0) == 1.0 and poly(5) == pytest.approx(0.5 ** 0.9) and poly(10) == 0.0
    # warm-up: (s + 1) / W for s < W, then the schedule over the remaining S - W steps
    warm = lr_factor("cosine", 14, warmup_steps=4)
    assert [warm(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert warm(4) == 1.0 and warm(9) == pytest.approx(0.5) and warm(14) == pytest.approx(0.0)
    flat = lr_factor(None, 6, warmup_steps=2)
    assert [flat(s) for s in range(6)] == [0.5, 1.0, 1.0, 1.0, 1.0, 1.0]
    warm_poly = lr_factor("poly", 12, warmup_steps=2)
    assert warm_poly(2) == 1.0 and warm_poly(7) == pytest.approx(0.5 ** 0.9)


@pytest.mark.parametrize("kwargs, match", [
    (dict(schedule="step"), "schedule must be"),
    (dict(schedule="cosine", warmup_steps=-1), "warmup_steps must be a non-negative int"),
    (dict(schedule="cosine", warmup_steps=2.5), "warmup_steps must be a non-negative int"),
    (dict(schedule="cosine", warmup_steps=10), "leaves no steps"),
])
def test_lr_factor_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        lr_factor(total_steps=10, **kwargs)


def test_fit_warmup_and_poly_match_manual_sgd():
    """fit's per-step rates are lr * lr_factor(step): replayed by hand with plain SGD (no momentum)."""
    x, y = cls_data(n=24)
    data = batches(x, y, 4)                      # 6 steps
    torch.manual_seed(0)
    net = cls_net()
    ref = copy.deepcopy(net)
    fit(net, data, task="classification", epochs=1, lr=0.5, optimizer="sgd", momentum=0.0, weight_decay=0.0,
        schedule="poly", warmup_steps=2, seed=None, **QUIET)
    factor = lr_factor("poly", 6, warmup_steps=2)
    for step, (xb, yb) in enumerate(data):
        ref.train()
        loss = F.cross_entropy(ref(xb), yb)
        grads = torch.autograd.grad(loss, list(ref.parameters()))
        with torch.no_grad():
            for p, g in zip(ref.parameters(), grads):
                p -= 0.5 * factor(step) * g
    for p, q in zip(net.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_fit_rejects_warmup_longer_than_the_run():
    x, y = cls_data(n=8)
    with pytest.raises(ValueError, match="warmup_steps=2 leaves no steps"):
        fit(cls_net(), batches(x, y, 4), task="classification", epochs=1, warmup_steps=2, **QUIET)


# ---------------------------------------------------------------------------------------------
# the pieces of fit: make_optimizer, train_one_epoch, loss_fn, schedule functions
# ---------------------------------------------------------------------------------------------
def test_make_optimizer_builds_each_kind():
    params = list(cls_net().parameters())
    adamw = make_optimizer(params, "adamw", lr=0.01, weight_decay=0.1)
    assert type(adamw) is torch.optim.AdamW and adamw.defaults["weight_decay"] == 0.1
    adam = make_optimizer(params, "adam", lr=0.01)
    assert type(adam) is torch.optim.Adam and adam.defaults["weight_decay"] == 0.0
    sgd = make_optimizer(params, "sgd", lr=0.1, momentum=0.9, weight_decay=1e-4)
    assert type(sgd) is torch.optim.SGD and sgd.defaults["nesterov"] and sgd.defaults["momentum"] == 0.9
    assert not make_optimizer(params, "sgd", lr=0.1, momentum=0.0).defaults["nesterov"]
    assert OPTIMIZERS == ("adamw", "adam", "sgd")
    with pytest.raises(ValueError, match="optimizer must be one of"):
        make_optimizer(params, "rmsprop", lr=0.1)
    with pytest.raises(ValueError, match="lr must be"):
        make_optimizer(params, "adamw", lr=-1.0)
    with pytest.raises(ValueError, match=r"momentum must be in \[0, 1\)"):
        make_optimizer(params, "sgd", lr=0.1, momentum=1.0)
    with pytest.raises(TypeError, match="weight_decay"):
        make_optimizer(params, "adamw", lr=0.1, weight_decay="0")


def test_fit_is_a_loop_over_train_one_epoch_bitwise():
    """fit == resolve_execution + make_optimizer + lr_factor schedule + train_one_epoch per epoch, to the bit
    (aux heads, sgd with momentum, clipping, warm-up and poly decay, class weights)."""
    from segbook.execution import resolve_execution

    x, y = seg_data(n=24)
    data = batches(x, y, 8)
    weights = torch.tensor([1.0, 2.5])
    args = dict(task="segmentation", num_classes=2, aux_weight=0.4, class_weights=weights, clip_grad=0.5)
    torch.manual_seed(0)
    net = AuxSeg()
    ref = copy.deepcopy(net)
    hist = fit(net, data, epochs=2, lr=0.05, optimizer="sgd", momentum=0.9, weight_decay=1e-3, schedule="poly",
               warmup_steps=2, seed=7, **args, **QUIET)
    ex = resolve_execution(ref)
    torch.manual_seed(7)
    ex.prepare(ref)
    opt = make_optimizer([p for p in ref.parameters() if p.requires_grad], "sgd", lr=0.05, momentum=0.9,
                         weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor("poly", 6, warmup_steps=2))
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    epochs = [train_one_epoch(ref, data, opt, scheduler=sched, scaler=scaler, execution=ex, **args) for _ in range(2)]
    assert hist.step_loss == epochs[0]["step_loss"] + epochs[1]["step_loss"]
    assert hist.train_loss == [e["loss"] for e in epochs] and hist.train_accuracy == [e["accuracy"] for e in epochs]
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), ref.state_dict().values()))


def test_train_one_epoch_alone_uses_the_models_execution():
    x, y = cls_data(n=16)
    net = cls_net()
    opt = make_optimizer(net.parameters(), "adamw", lr=0.01)
    out = train_one_epoch(net, batches(x, y, 8), opt, task="classification", num_classes=3)
    assert set(out) == {"loss", "accuracy", "step_loss"} and len(out["step_loss"]) == 2
    assert out["loss"] == pytest.approx(sum(out["step_loss"]) / 2) and 0 <= out["accuracy"] <= 1
    assert net.training  # fit, not train_one_epoch, switches to eval at the end


def test_fit_regression_with_mse_loss_fn_equals_a_manual_adam_loop():
    """task="regression" + loss_fn: float targets, no label checks or accuracy; numbers of a hand-written loop."""
    g = torch.Generator().manual_seed(0)
    x, w_true = torch.rand(32, 5, generator=g), torch.randn(5, 2, generator=g)
    y = x @ w_true
    data = batches(x, y, 8)
    torch.manual_seed(0)
    net = nn.Linear(5, 2)
    ref = copy.deepcopy(net)
    schedule = lambda t: 1.0 / (1 + t)  # noqa: E731  a function of the step, as LambdaLR takes
    hist = fit(net, data, task="regression", loss_fn=F.mse_loss, epochs=2, lr=0.05, optimizer="adam",
               weight_decay=0.0, schedule=schedule, seed=None, **QUIET)
    opt = torch.optim.Adam(ref.parameters(), lr=0.05)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    losses = []
    for _ in range(2):
        for xb, yb in data:
            loss = F.mse_loss(ref(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
    assert hist.task == "regression" and hist.step_loss == losses
    assert hist.train_accuracy == [] and len(hist.train_loss) == 2
    assert all(torch.equal(a, b) for a, b in zip(net.parameters(), ref.parameters()))
    assert hist.step_loss[-1] < 0.5 * hist.step_loss[0]


def test_loss_fn_applies_to_main_and_aux_outputs():
    x, y = seg_data(n=8)
    torch.manual_seed(0)
    net = AuxSeg()
    seen = []

    def loss_fn(out, target):
        seen.append(tuple(out.shape))
        return F.cross_entropy(F.interpolate(out, size=target.shape[-2:]), target)

    fit(net, batches(x, y, 8), task="segmentation", loss_fn=loss_fn, epochs=1, **QUIET)
    assert seen == [(8, 2, 8, 8), (8, 2, 4, 4)]


def test_fit_regression_and_loss_fn_errors():
    x = torch.rand(8, 5)
    data = batches(x, x[:, :2], 4)
    with pytest.raises(ValueError, match="task='regression' needs loss_fn"):
        fit(nn.Linear(5, 2), data, task="regression", epochs=1, **QUIET)
    with pytest.raises(ValueError, match="no val_loader"):
        fit(nn.Linear(5, 2), data, data, task="regression", loss_fn=F.mse_loss, epochs=1, **QUIET)
    with pytest.raises(TypeError, match="loss_fn must be a function"):
        fit(nn.Linear(5, 2), data, task="regression", loss_fn="mse", epochs=1, **QUIET)
    xs, ys = seg_data(n=8)
    with pytest.raises(ValueError, match="class_weights weigh the default cross-entropy"):
        fit(seg_net(), batches(xs, ys, 4), task="segmentation", num_classes=2, loss_fn=F.cross_entropy,
            class_weights=torch.ones(2), epochs=1, **QUIET)
    with pytest.raises(ValueError, match="fold the warm-up into your schedule function"):
        fit(nn.Linear(5, 2), data, task="regression", loss_fn=F.mse_loss, schedule=lambda t: 1.0, warmup_steps=1,
            epochs=1, **QUIET)
    with pytest.raises(ValueError, match="clip_grad"):
        fit(seg_net(), batches(xs, ys, 4), task="segmentation", epochs=1, clip_grad=0.0, **QUIET)
