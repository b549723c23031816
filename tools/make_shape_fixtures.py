#!/usr/bin/env python
"""Build tests/fixtures/exporters/{shuffle_chunk,tiny_vit}_{torchscript,dynamo}.onnx.

Two tiny seeded torch models, each exported by both torch exporters (TorchScript, ``dynamo=True``)
with a dynamic batch, for the shape-subgraph tests:

- ``shuffle_chunk``: ShuffleNetV2's unit in small: ``chunk(2, dim=1)`` channel split, a branch,
  Concat and the channel shuffle (``view``/``transpose``/``reshape`` with sizes read off
  ``x.shape``). The TorchScript exporter writes the split as Slices whose bounds come from
  ``Shape``; dynamo writes a Split with constant sizes.
- ``tiny_vit``: a ViT's embedding in small: patch Conv, class token expanded to the batch,
  position embeddings sliced to the token count (``pos[:, :t.shape[1]]``), a residual MLP, mean
  over tokens, linear head. The class token and the first position embedding are zero and no layer
  has a bias, so LRP-0 conserves exactly; the other position embeddings are not zero (an added
  constant, explained with the Pass rule like a bias).

Needs torch (the dev stack)::

    PYTHONPATH=$PWD /work/devenv/bin/python tools/make_shape_fixtures.py [--out DIR]
"""
import argparse
import pathlib

import onnx
import torch
from torch import nn

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "exporters"


class ShuffleChunk(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.fc = nn.Linear(8, 5, bias=False)

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        a, b = x.chunk(2, dim=1)
        x = torch.cat([a, torch.relu(self.conv2(b))], 1)
        n, c, h, w = x.shape
        x = x.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)
        return self.fc(x.mean((2, 3)))


class TinyViT(nn.Module):
    def __init__(self):
        super().__init__()
        self.patch = nn.Conv2d(3, 6, 4, stride=4, bias=False)
        self.cls = nn.Parameter(torch.zeros(1, 1, 6))
        pos = torch.randn(1, 20, 6) * 0.1
        pos[:, 0] = 0
        self.pos = nn.Parameter(pos)
        self.mlp = nn.Linear(6, 6, bias=False)
        self.head = nn.Linear(6, 4, bias=False)

    def forward(self, x):
        t = self.patch(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls.expand(t.shape[0], -1, -1), t], 1)
        t = t + self.pos[:, :t.shape[1]]
        t = t + torch.relu(self.mlp(t))
        return self.head(t.mean(1))


def export(model, path, dynamo):
    x = torch.randn(2, 3, 8, 8)
    if dynamo:
        torch.onnx.export(model, (x,), str(path), dynamo=True, input_names=["x"], output_names=["y"],
                          dynamic_shapes={"x": {0: torch.export.Dim("N")}}, optimize=True)
        data = pathlib.Path(f"{path}.data")
        proto = onnx.load(str(path))  # dynamo writes the weights beside the model: store them inline
        onnx.save(proto, str(path))
        data.unlink(missing_ok=True)
    else:
        torch.onnx.export(model, (x,), str(path), dynamo=False, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "N"}, "y": {0: "N"}}, opset_version=17)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=OUT)
    args = parser.parse_args()
    for name, cls in (("shuffle_chunk", ShuffleChunk), ("tiny_vit", TinyViT)):
        torch.manual_seed(0)
        model = cls().eval()
        for exporter in ("torchscript", "dynamo"):
            path = args.out / f"{name}_{exporter}.onnx"
            export(model, path, exporter == "dynamo")
            print("wrote", path, path.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
