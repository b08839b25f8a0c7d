"""Operator counts of one forward pass, segbook vs torchvision: the ops where the two models differ.

    python benchmarks/diagnose_ops.py r50     # ImageNet ResNet-50
    python benchmarks/diagnose_ops.py dl      # DeepLab v3 R-50 OS8 (deeplabv3_resnet50)

Used to find why ResNet-50 inference was slower than torchvision (benchmarks/NOTES.md); prints nothing
for an operator that both run equally often.
"""
import sys, torch, torchvision, collections
from torch.profiler import profile
from models import resnet_classifier  # benchmarks/models.py (the script's folder is on sys.path)
from segbook.models import deeplabv3
from torchvision.models.segmentation import deeplabv3_resnet50
which = sys.argv[1]
if which == "r50":
    a, b = resnet_classifier(depth=50).eval(), torchvision.models.resnet50().eval(); x = torch.rand(1,3,64,64)
else:
    a = deeplabv3(num_classes=21, depth=50, width=64, output_stride=8, stem="imagenet", aspp_channels=256, dropout=0.5).eval()
    b = deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=21, aux_loss=False).eval(); x = torch.rand(1,3,64,64)
def ops(m):
    with torch.inference_mode(), profile() as p:
        m(x)
    c = collections.Counter(e.name for e in p.events() if e.cpu_parent is None or True)
    return c
ca, cb = ops(a), ops(b)
for k in sorted(set(ca) | set(cb)):
    if ca[k] != cb[k]: print(f"{k:40s} segbook {ca[k]:4d} torchvision {cb[k]:4d}")
