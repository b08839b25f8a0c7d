"""Before/after of the in-place shortcut addition and stem ReLU (commit 968221b), against torchvision.

    OMP_NUM_THREADS=1 python benchmarks/diagnose_inplace.py 1 infer 11    # ResNet-50 inference, 11 rounds
    OMP_NUM_THREADS=1 python benchmarks/diagnose_inplace.py 1 train 7     # ResNet-50 training step
    (index into run.model_pairs(quick=True): 0 ResNet-18, 1 ResNet-50, 2 DeepLab v3 R-50 OS8)

"before" is the current model with the old out-of-place forward patched back in; all three models share
torchvision's weights and are timed in turns (benchmarks/harness.py).
"""
import sys, types, torch
import torch.nn as nn, torch.nn.functional as F
sys.path.insert(0, "benchmarks")
from harness import time_interleaved, ratio, paired_ratio
from run import model_pairs, copy_weights, _logits
from segbook.models import resnet as R
def old_forward(self, x):
    out = self.residual(x)
    if self.shortcut:
        identity = x if self.downsample is None else self.downsample(x)
        out = out + identity
    return self.relu(out)
idx, mode, reps = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
name, mo, mt, shape, classes, dense = model_pairs(True)[idx]
torch.manual_seed(0)
tv = mt(); after = mo(); copy_weights(tv, after); before = mo(); copy_weights(tv, before)
for m in before.modules():
    if isinstance(m, R._ResidualBlock):
        m.forward = types.MethodType(old_forward, m)
for m in before.backbone.stem.modules():
    if isinstance(m, nn.ReLU): m.inplace = False
x = torch.rand(shape); y = torch.randint(0, classes, (shape[0], *shape[2:]) if dense else (shape[0],))
def infer(m):
    m.eval()
    def f():
        with torch.inference_mode(): m(x)
    return f
def train(m):
    m.train(); opt = torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9)
    def f():
        opt.zero_grad(set_to_none=True); F.cross_entropy(_logits(m(x)), y).backward(); opt.step()
    return f
mk = infer if mode == "infer" else train
t = time_interleaved({"before": mk(before), "after": mk(after), "torchvision": mk(tv)}, warmup=2, repeats=reps)
for k in t: print(f"{name} {mode} {torch.get_num_threads()}t {k}: {t[k].median:.3f} s, ratio {ratio(t[k], t['torchvision']):.3f}, paired {paired_ratio(t[k], t['torchvision']):.3f}")
