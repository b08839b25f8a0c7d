"""Tests for segbook.train: fit / evaluate / predict and History, on tiny CPU problems."""
from __future__ import annotations

import copy
import math
import re

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from segbook.data import make_loader
from segbook.train import (TASKS, History, class_balance_weights, evaluate, fit, fit_many, lr_factor, parallel_workers,
                           predict)

QUIET = dict(progress=False, log=False)


pytestmark = pytest.mark.usefixtures("one_thread")


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
    with pytest.raises(ValueError, match=re.escape(f"task must be one of {TASKS}, got {task!r}")):
        fit(cls_net(), batches(x, y, 4), task=task, epochs=1, **QUIET)


def test_fit_bad_optimizer_and_schedule():
    x, y = cls_data(n=8)
    with pytest.raises(ValueError, match="optimizer must be 'adamw' or 'sgd', got 'adam'"):
        fit(cls_net(), batches(x, y, 4), task="classification", epochs=1, optimizer="adam", **QUIET)
    with pytest.raises(ValueError, match="schedule must be 'cosine', 'poly' or None"):
        fit(cls_net(), batches(x, y, 4), task="classification", epochs=1, schedule="step", **QUIET)


@pytest.mark.parametrize("epochs", [0, -1, 1.5, True, "2"])
def test_fit_bad_epochs(epochs):
    x, y = cls_data(n=8)
    with pytest.raises(ValueError, match="epochs must be a positive int"):
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


# ---------------------------------------------------------------------------------------------
# Precision and device choices (the GPU path, tested on the CPU)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("capability,expected", [((7, 5), torch.float16), ((7, 0), torch.float16),
                                                 ((8, 0), torch.bfloat16), ((9, 0), torch.bfloat16)])
def test_amp_dtype_follows_compute_capability_not_emulated_bf16(monkeypatch, capability, expected):
    from segbook.train import amp_dtype_for, resolve_execution
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)  # a T4 says yes
    assert amp_dtype_for("cuda") == expected
    ex = resolve_execution(device="cuda")
    assert ex.amp and ex.channels_last and ex.amp_dtype == expected
    assert ex.grad_scaler == (expected == torch.float16)


def test_execution_on_cpu_and_mps_defaults():
    from segbook.train import resolve_execution
    ex = resolve_execution(torch.nn.Linear(2, 2))
    assert ex.device.type == "cpu" and not ex.amp and not ex.channels_last and not ex.grad_scaler
    assert ex.accumulator_dtype == torch.float64
    assert resolve_execution(device="mps", amp=False).accumulator_dtype == torch.float32  # MPS has no float64
    with pytest.raises(ValueError, match="model or a device"):
        resolve_execution()


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


# ---- fit_many: independent models, parallel processes on a multi-core CPU ----------------------

def _seg_data(n=32, size=32, k=3):
    g = torch.Generator().manual_seed(0)
    return torch.utils.data.TensorDataset(torch.rand(n, 3, size, size, generator=g),
                                          torch.randint(0, k, (n, size, size), generator=g))


def _two_models(k=3):
    from segbook.models import fcn8s, unet
    torch.manual_seed(1)
    return {"fcn": fcn8s(num_classes=k, width=4), "unet": unet(num_classes=k, depth=2, base_width=4)}


FIT_ARGS = dict(task="segmentation", num_classes=3, epochs=2, lr=0.01, seed=5, channels_last=True)


@pytest.mark.skipif(parallel_workers(2, "cpu") < 2, reason="needs Linux and two usable cores")
def test_fit_many_in_processes_equals_fit_one_model_after_another():
    ds = _seg_data()
    make = lambda: make_loader(ds, 8, shuffle=True, seed=3, drop_last=True)  # noqa: E731
    parallel, sequential = _two_models(), _two_models()
    before = {k: v.clone() for k, v in parallel["unet"].state_dict().items()}
    threads = torch.get_num_threads()
    hist = fit_many(parallel, make, workers=2, **FIT_ARGS)
    assert torch.get_num_threads() == threads  # the parent's setting is untouched
    torch.set_num_threads(max(1, threads // 2))  # what each child used
    try:
        ref = {n: fit(m, make(), progress=False, log=False, desc=n, **FIT_ARGS) for n, m in sequential.items()}
    finally:
        torch.set_num_threads(threads)
    assert list(hist) == ["fcn", "unet"]
    for name in parallel:
        got, want = parallel[name].state_dict(), sequential[name].state_dict()
        assert all(torch.equal(got[k], want[k]) for k in want), name  # bitwise: same ops, same thread count
        assert hist[name].step_loss == ref[name].step_loss and len(hist[name].step_loss) == 8
        assert not parallel[name].training
    assert not all(torch.equal(before[k], parallel["unet"].state_dict()[k]) for k in before)  # it did train


def test_fit_many_with_one_worker_is_fit_in_order():
    ds = _seg_data()
    make = lambda: make_loader(ds, 8, shuffle=True, seed=3, drop_last=True)  # noqa: E731
    a, b = _two_models(), _two_models()
    hist = fit_many(a, make, workers=1, progress=False, log=False, **FIT_ARGS)
    for name in a:
        ref = fit(b[name], make(), progress=False, log=False, **FIT_ARGS)
        assert hist[name].step_loss == ref.step_loss
        assert all(torch.equal(a[name].state_dict()[k], v) for k, v in b[name].state_dict().items())


@pytest.mark.skipif(parallel_workers(2, "cpu") < 2, reason="needs Linux and two usable cores")
def test_fit_many_reports_a_failure_in_a_child_with_its_name_and_cause():
    ds = _seg_data(k=5)  # labels up to 4 for 3-class models
    make = lambda: make_loader(ds, 8)  # noqa: E731
    with pytest.raises(RuntimeError, match=r"training 'fcn' failed in a child process: ValueError: .*label"):
        fit_many(_two_models(), make, workers=2, **FIT_ARGS)


def test_fit_many_gives_each_model_its_own_loader_when_given_a_mapping():
    # one factory per model (chapter 4's augmentation ablation): each model trains on its own data,
    # with the numbers fit gives it on that data, in processes or not
    ds_a, ds_b = _seg_data(), torch.utils.data.TensorDataset(*(t.flip(-1) for t in _seg_data().tensors))
    makers = {"fcn": lambda: make_loader(ds_a, 8, shuffle=True, seed=3, drop_last=True),
              "unet": lambda: make_loader(ds_b, 8, shuffle=True, seed=3, drop_last=True)}
    threads = torch.get_num_threads()
    for workers in (1, 2):
        got, ref = _two_models(), _two_models()
        hist = fit_many(got, makers, workers=workers, **FIT_ARGS)
        used = max(1, threads // min(workers, parallel_workers(2, "cpu")))
        torch.set_num_threads(used)
        try:
            want = {n: fit(m, makers[n](), progress=False, log=False, desc=n, **FIT_ARGS) for n, m in ref.items()}
        finally:
            torch.set_num_threads(threads)
        for name in got:
            assert hist[name].step_loss == want[name].step_loss, (workers, name)
    # the same model on the other loader would have seen other batches: the mapping is honoured
    swapped = _two_models()
    other = fit(swapped["unet"], makers["fcn"](), progress=False, log=False, **FIT_ARGS)
    assert other.step_loss != hist["unet"].step_loss
    with pytest.raises(ValueError, match=r"loaders for \['fcn'\] but the models are \['fcn', 'unet'\]"):
        fit_many(_two_models(), {"fcn": makers["fcn"]}, **FIT_ARGS)
    with pytest.raises(TypeError, match="callable that returns a fresh training loader"):
        fit_many(_two_models(), {"fcn": makers["fcn"], "unet": make_loader(ds_b, 8)}, **FIT_ARGS)


def test_fit_many_costs_change_the_start_order_not_the_numbers_and_val_loaders_may_differ():
    ds = _seg_data()
    make = lambda: make_loader(ds, 8, shuffle=True, seed=3, drop_last=True)  # noqa: E731
    vals = {"fcn": make_loader(_seg_data(n=8), 8), "unet": make_loader(_seg_data(n=8, size=16), 8)}
    for workers in (1, 2):
        plain, ordered = _two_models(), _two_models()
        want = fit_many(plain, make, workers=workers, val_loader=vals, **FIT_ARGS)
        got = fit_many(ordered, make, workers=workers, val_loader=vals, costs={"fcn": 1, "unet": 3.5}, **FIT_ARGS)
        assert list(got) == ["fcn", "unet"]                                  # returned in the order of models
        for name in plain:
            assert got[name].step_loss == want[name].step_loss, (workers, name)
            assert got[name].final == want[name].final
        assert got["fcn"].final != got["unet"].final                         # each scored on its own loader
    with pytest.raises(ValueError, match=r"costs must map every model name"):
        fit_many(_two_models(), make, costs={"fcn": 1}, **FIT_ARGS)
    with pytest.raises(ValueError, match=r"costs\['unet'\] must be a positive number"):
        fit_many(_two_models(), make, costs={"fcn": 1, "unet": 0}, **FIT_ARGS)
    with pytest.raises(ValueError, match=r"val_loader has loaders for \['fcn'\]"):
        fit_many(_two_models(), make, val_loader={"fcn": vals["fcn"]}, **FIT_ARGS)


def test_fit_many_rejects_bad_arguments():
    ds = _seg_data()
    loader = make_loader(ds, 8)
    with pytest.raises(TypeError, match="callable that returns a fresh training loader"):
        fit_many(_two_models(), loader, **FIT_ARGS)
    with pytest.raises(TypeError, match="do not pass desc="):
        fit_many(_two_models(), lambda: loader, desc="x", **FIT_ARGS)
    with pytest.raises(TypeError, match="non-empty mapping"):
        fit_many({}, lambda: loader, **FIT_ARGS)
    with pytest.raises(TypeError, match=r"models\['a'\] must be an nn.Module"):
        fit_many({"a": "resnet"}, lambda: loader, **FIT_ARGS)


def test_parallel_workers_uses_one_process_off_the_cpu_and_at_most_one_per_job():
    assert parallel_workers(5, "cuda") == 1 and parallel_workers(5, torch.device("cuda", 0)) == 1
    assert 1 <= parallel_workers(5, "cpu") <= 5 and parallel_workers(1, "cpu") == 1
    with pytest.raises(ValueError):
        parallel_workers(0)
