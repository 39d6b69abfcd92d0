#!/usr/bin/python3
"""Export the inference benchmark's models to ONNX (issue: ONNX inference runtime benchmark).

For each of torchvision's resnet18, mobilenet_v2 and squeezenet1_1 (architectures from Debian's
python3-torchvision, random weights: torch.manual_seed(0), weights=None, model.eval()) writes

  OUTDIR/<model>.onnx                    opset 13, input "input" [batch,3,224,224] (dynamic batch
                                         axis), output "output" [batch,1000]
  OUTDIR/input-b<B>.npy                  a fixed random input (float32, seed 1000+B), B in --batches
  OUTDIR/<model>-b<B>-torch-output.npy   PyTorch's output for that input

so that bench_infer.py can check cpn-agent's answers against PyTorch's. The models are ~5-45 MB
each and are not committed: the default OUTDIR (build/bench-models) is git-ignored (build*).

Usage: /usr/bin/python3 bench/infer/export_models.py [OUTDIR] [--models resnet18,...] [--batches 1,8]
Needs torch, torchvision, onnx and numpy (Debian's python3-torch, -torchvision, -onnx, -numpy).
"""
import argparse
import inspect
import pathlib
import sys

import numpy as np
import onnx
import torch
import torchvision

REPO = pathlib.Path(__file__).resolve().parents[2]
MODELS = ("resnet18", "mobilenet_v2", "squeezenet1_1")


def build(name):
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None)
    model.eval()
    return model


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir", nargs="?", default=str(REPO / "build" / "bench-models"))
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--opset", type=int, default=13)
    args = ap.parse_args()

    out = pathlib.Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)
    batches = [int(b) for b in args.batches.split(",") if b]
    models = [m for m in args.models.split(",") if m]

    # PyTorch >= 2.9 exports through torch.export (dynamo) by default, into opset 18 and beyond;
    # the TorchScript exporter gives the opset asked for (Debian 12's PyTorch has only that one).
    params = inspect.signature(torch.onnx.export).parameters
    legacy = {"dynamo": False} if "dynamo" in params else {}

    inputs = {}
    for b in batches:
        rng = np.random.default_rng(1000 + b)
        x = rng.standard_normal((b, 3, 224, 224), dtype=np.float32)
        np.save(out / f"input-b{b}.npy", x)
        inputs[b] = x

    for name in models:
        model = build(name)
        path = out / f"{name}.onnx"
        with torch.no_grad():
            kw = dict(opset_version=args.opset, input_names=["input"], output_names=["output"],
                      dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
                      do_constant_folding=True)
            try:
                torch.onnx.export(model, torch.from_numpy(inputs[batches[0]]), str(path), **kw, **legacy)
            except Exception as e:  # a PyTorch whose TorchScript exporter is gone: torch.export's
                if not legacy:
                    raise
                print(f"{name}: the TorchScript exporter failed ({e}); exporting with dynamo=True",
                      file=sys.stderr)
                dyn = {"dynamo": True, **({"external_data": False} if "external_data" in params else {})}
                torch.onnx.export(model, torch.from_numpy(inputs[batches[0]]), str(path), **kw, **dyn)
            onnx.checker.check_model(onnx.load(str(path)))
            print(f"{name}: opset {max(o.version for o in onnx.load(str(path)).opset_import if o.domain in ('', 'ai.onnx'))}",
                  file=sys.stderr)
            for b, x in inputs.items():
                y = model(torch.from_numpy(x)).numpy()
                np.save(out / f"{name}-b{b}-torch-output.npy", y)
        print(f"{name}: {path} ({path.stat().st_size / 1e6:.1f} MB), outputs for batch "
              f"{', '.join(map(str, batches))}", file=sys.stderr)


if __name__ == "__main__":
    main()
