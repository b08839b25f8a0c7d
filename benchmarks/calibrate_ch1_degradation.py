"""Chapter 1 degradation calibration: final training loss (mean of the last fifth) and val accuracy of plain/ResNet nets.

Usage: python benchmarks/calibrate_ch1_degradation.py SEED DEPTHS [STEPS]   (e.g. 0 8,20,32); one JSON line.
Run under ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 for another CPU's arithmetic. Results of
seeds 0-2 x {native AVX-512, AVX2}: calibrate_ch1_degradation.jsonl (2026-12-02, AMD EPYC, one thread each)."""
import sys, json, os, torch
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent.parent))
from segbook.runtime import setup
from segbook.data import chapter_datasets, make_loader
from segbook.models import cifar_resnet
from segbook.train import fit
seed = int(sys.argv[1]); depths = [int(d) for d in sys.argv[2].split(",")]; steps = int(sys.argv[3]) if len(sys.argv) > 3 else 600
torch.set_num_threads(1)
rt = setup(seed=seed)
BATCH = 64
train_set, val_set, info = chapter_datasets(rt, task="classification", size=16, n_train=steps * BATCH, n_val=1000)
out = {}
for depth in depths:
    for shortcuts in (False, True):
        torch.manual_seed(rt.seed)
        net = cifar_resnet(depth=depth, width=8, shortcuts=shortcuts)
        h = fit(net, make_loader(train_set, BATCH, shuffle=True, seed=rt.seed), make_loader(val_set, 500), task="classification",
                num_classes=info.num_classes, epochs=1, lr=3e-3, device="cpu", channels_last=True, seed=rt.seed, progress=False, log=False)
        tail = h.step_loss[-(len(h.step_loss) // 5):]
        out[f"{'res' if shortcuts else 'plain'}{depth}"] = (round(sum(tail) / len(tail), 3), round(h.final["accuracy"], 3))
print(json.dumps({"seed": seed, "isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "native"), "steps": steps, **out}), flush=True)
