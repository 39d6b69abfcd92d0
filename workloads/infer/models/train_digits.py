#!/usr/bin/python3
"""Trains the small CNN the inference tests run on real data, and exports it to ONNX.

The data are the 8x8 handwritten digits that ship with scikit-learn (Debian's python3-sklearn;
1797 images, no download). A fixed split keeps 450 images out of training; the test checks
that every backend classifies them with at least 95 % accuracy and that the backends agree.

Writes, into the directory given (default: tests/fixtures/infer):
  digits-cnn.onnx     the model, opset 13, input "image" float32 [batch, 1, 8, 8] (pixels / 16),
                      output "logits" float32 [batch, 10]; BatchNormalization kept as its own
                      node so the runtime's Conv+BatchNormalization+Relu fusion is exercised
  digits-test-x.npy   float32 [450, 1, 8, 8], the held-out images
  digits-test-y.npy   int64 [450], their labels
  digits-cnn.json     the PyTorch accuracy on the held-out set and the training settings

Usage: workloads/infer/models/train_digits.py [OUTDIR]   (python3-torch, python3-sklearn,
python3-onnx from Debian; deterministic: seeded, single-threaded)
"""
import json
import os
import sys

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "../../../tests/fixtures/infer")
os.makedirs(out_dir, exist_ok=True)
torch.manual_seed(0)
torch.set_num_threads(1)

digits = load_digits()
x = (digits.images.astype(np.float32) / 16.0)[:, None, :, :]
y = digits.target.astype(np.int64)
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=450, random_state=0, stratify=y)


class DigitsCnn(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 16, 3, padding=1)
        self.bn1 = torch.nn.BatchNorm2d(16)
        self.conv2 = torch.nn.Conv2d(16, 32, 3, padding=1)
        self.bn2 = torch.nn.BatchNorm2d(32)
        self.fc = torch.nn.Linear(32 * 2 * 2, 10)

    def forward(self, v):
        v = torch.nn.functional.max_pool2d(torch.relu(self.bn1(self.conv1(v))), 2)
        v = torch.nn.functional.max_pool2d(torch.relu(self.bn2(self.conv2(v))), 2)
        return self.fc(torch.flatten(v, 1))


model = DigitsCnn()
opt = torch.optim.Adam(model.parameters(), lr=3e-3)
xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
epochs = 30
for epoch in range(epochs):
    model.train()
    perm = torch.randperm(len(xt))
    for i in range(0, len(xt), 64):
        idx = perm[i:i + 64]
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
        loss.backward()
        opt.step()
model.eval()
with torch.no_grad():
    pred = model(torch.from_numpy(x_test)).argmax(1).numpy()
accuracy = float((pred == y_test).mean())
print(f"held-out accuracy (PyTorch): {accuracy:.4f} on {len(y_test)} images")

onnx_path = os.path.join(out_dir, "digits-cnn.onnx")
torch.onnx.export(model, torch.from_numpy(x_test[:1]), onnx_path, opset_version=13,
                  input_names=["image"], output_names=["logits"],
                  dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
                  training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)
np.save(os.path.join(out_dir, "digits-test-x.npy"), x_test)
np.save(os.path.join(out_dir, "digits-test-y.npy"), y_test)
with torch.no_grad():
    logits = model(torch.from_numpy(x_test)).numpy()
np.save(os.path.join(out_dir, "digits-test-logits.npy"), logits.astype(np.float32))
with open(os.path.join(out_dir, "digits-cnn.json"), "w") as f:
    json.dump({"pytorch_accuracy": accuracy, "test_images": int(len(y_test)), "epochs": epochs,
               "torch": torch.__version__, "split_seed": 0}, f, indent=2)
    f.write("\n")

import onnx  # noqa: E402
m = onnx.load(onnx_path)
onnx.checker.check_model(m)
print("nodes:", [n.op_type for n in m.graph.node])
