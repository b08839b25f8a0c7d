"""A chapter's code path end to end on real-format data: SEGBOOK_DATA=pets on a fake Pets folder.

Runs, in a fresh Python process with only environment variables to steer it (as a learner would
set them before opening a chapter), the steps every segmentation chapter takes: ``setup`` ->
``chapter_datasets`` -> ``make_loader`` -> a model sized by ``info.num_classes`` -> ``fit`` ->
``evaluate`` -> claims through ``info.claim`` -> the report of unchecked claims. Tiny sizes (a
few seconds). Sockets are not reachable in that process either: a download attempt would fail.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from fakedata import write_fake_pets

REPO = Path(__file__).resolve().parents[1]

CHAPTER = r'''
import json, math, socket

def refuse(*args, **kwargs):
    raise RuntimeError("network access while running a chapter")
socket.socket.connect = refuse
socket.create_connection = refuse

import torch
from segbook.runtime import setup
from segbook.data import chapter_datasets, make_loader, take
from segbook.models import fcn8s
from segbook.train import evaluate, fit

rt = setup(seed=0)
print(rt)
P = rt.profile
train_set, val_set, info = chapter_datasets(rt, task="segmentation", size=P.choose(quick=32, full=64),
                                            n_train=P.choose(quick=8, full=64), n_val=4, augment=True)
print(info)
val_images, val_masks = take(val_set)
model = fcn8s(num_classes=info.num_classes, width=4)
hist = fit(model, make_loader(train_set, 4, shuffle=True, seed=rt.seed), make_loader(val_set, 4),
           task="segmentation", num_classes=info.num_classes, epochs=2, lr=3e-3, device=rt.device,
           seed=rt.seed, progress=False)
result = evaluate(model, make_loader(val_set, 4), task="segmentation", num_classes=info.num_classes,
                  device=rt.device)
info.claim(result["miou"] > 0.8, f"FCN-8s reaches mIoU > 0.8 (measured {result['miou']:.3f})")
info.claim(math.isfinite(hist.train_loss[-1]), "training loss stays finite")
print(info.unchecked_report())
print("RESULT " + json.dumps({"classes": list(info.classes), "claims_apply": info.claims_apply,
                              "val_shape": list(val_images.shape), "mask_values": sorted(val_masks.unique().tolist()),
                              "epochs": len(hist.train_loss), **{k: float(v) for k, v in result.items() if isinstance(v, (int, float))}}))
'''


def test_pets_chapter_runs_to_the_end_on_fake_files(tmp_path):
    write_fake_pets(tmp_path / "data", n_trainval=8, n_test=4, height=40, width=48)
    script = tmp_path / "chapter.py"
    script.write_text(CHAPTER)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGBOOK_")}
    env.update(SEGBOOK_DATA="pets", SEGBOOK_DATA_ROOT=str(tmp_path / "data"), SEGBOOK_PROFILE="quick",
               PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, str(script)], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert f"data=pets(root={tmp_path / 'data'}, download=False)" in out  # the setup line says what data
    assert "data=pets: Oxford-IIIT Pet trainval 8 of 8 / test 4 of 4 images at 32x32" in out
    result = json.loads(out.split("RESULT ", 1)[1].splitlines()[0])
    assert result["classes"] == ["background", "pet"] and result["claims_apply"] is False
    assert result["val_shape"] == [4, 3, 32, 32] and result["mask_values"] == [0, 1, 255]
    assert result["epochs"] == 2
    for key in ("loss", "miou", "pixel_acc"):
        assert key in result and result[key] == result[key]  # present and not NaN
    assert 0.0 <= result["miou"] <= 1.0 and 0.0 <= result["pixel_acc"] <= 1.0
    # On real data the calibrated claims are reported, not asserted:
    assert "these claims are calibrated on the procedural data and were not checked" in out
    assert "FCN-8s reaches mIoU > 0.8 (measured" in out and "training loss stays finite [held here]" in out
