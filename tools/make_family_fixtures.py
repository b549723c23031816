#!/usr/bin/env python
"""Build the architecture-family fixtures (tests/fixtures/families) and the family table.

Run with an environment that has torch, torchvision, zennit and onnxscript (the ``dev`` extra)::

    python tools/make_family_fixtures.py                 # writes tests/fixtures/families/
    python tools/make_family_fixtures.py --out DIR       # writes elsewhere (to diff a rebuild)
    python tools/make_family_fixtures.py --table         # the table for the stored reduced models
    python tools/make_family_fixtures.py --full          # full-size torchvision models: export, explain, table
    python tools/make_family_fixtures.py --full --families resnet50,mobilenet_v2 --size 160

Every model is built from torchvision's own classes (reduced: narrow widths, few blocks, small
inputs; ``--full``: the original constructors at 224×224) with seeded parameters: He-normal
weights, biases U[−0.2, 0.2], BatchNorm/LayerNorm weights U[0.5, 1.5] and biases U[−0.3, 0.3],
ConvNeXt layer scales U[0.2, 0.6], BatchNorm running statistics measured on a seeded calibration
batch and then perturbed. Each is exported by both torch exporters: TorchScript
(``dynamo=False``, opset 17) and ``torch.export`` (``dynamo=True``, opset 18), with a dynamic
batch axis.

For VGG-BN, ResNet and MobileNetV2, where Zennit has the same canonical answer (BatchNorm merged
into the convolution, residual sums as ``zennit.layer.Sum`` with the Norm rule, average pools as
modules), the relevance of Zennit 0.5.1 is stored next to the models
(``<family>__<composite>.npz``: ``x``, ``target``, ``relevance``, ``logits``, and ``low``/``high``
for epsilon_gamma_box), computed on a copy with each BatchNorm merged exactly into its
convolution first (see :func:`merge_batchnorm_exactly`). The table (``--table``/``--full``) lists, per family × exporter ×
composite, whether onnx-lrp compiles the model, the conservation error (Epsilon ε=0, Norm
stabiliser 0, Conv/Gemm biases zeroed after canonization) and the agreement with Zennit.
"""
from __future__ import annotations

import argparse
import copy
import importlib
import json
import pathlib
import sys
import tempfile
import time
import warnings

import numpy as np
import torch
import torchvision
from torch import nn
from torchvision.models import convnext, densenet, efficientnet, mobilenetv2, mobilenetv3, resnet, squeezenet, vgg

googlenet = importlib.import_module("torchvision.models.googlenet")  # the package attribute is the function

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "families"
sys.path.insert(0, str(ROOT / "tools"))

import family_report  # noqa: E402  (no torch; also used by --table)
from batchnorm_calibration import calibrate_batchnorm  # noqa: E402

NUM_CLASSES = 10
BATCH = 4
EXPORTERS = ("torchscript", "dynamo")
ZENNIT_COMPOSITES = ("epsilon_plus_flat", "epsilon_alpha2_beta1_flat", "epsilon_gamma_box")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ---------------------------------------------------------------------------------------------
# parameters


def randomize_parameters(model, calibration):
    """Seeded, nonzero, well-scaled parameters and BatchNorm statistics (global torch RNG)."""
    for module in model.modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            fan_in = module.weight[0].numel()
            module.weight.data = torch.randn(module.weight.shape) * (2.0 / fan_in) ** 0.5
            if module.bias is not None:
                module.bias.data = (torch.rand(module.bias.shape) * 2 - 1) * 0.2
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm)):
            if module.weight is not None:
                module.weight.data = 0.5 + torch.rand(module.weight.shape)
                module.bias.data = (torch.rand(module.bias.shape) * 2 - 1) * 0.3
        elif isinstance(module, convnext.CNBlock):
            module.layer_scale.data = 0.2 + 0.4 * torch.rand(module.layer_scale.shape)

    calibrate_batchnorm(model, calibration, (nn.BatchNorm1d, nn.BatchNorm2d))
    return model


def image_batch(batch, size, seed):
    """u ~ U[0, 1) normalised with the ImageNet mean/std: values of both signs."""
    generator = torch.Generator().manual_seed(seed)
    u = torch.rand((batch, 3, size, size), generator=generator)
    mean, std = _mean_std()
    return (u - mean) / std


def signal_batch(batch, shape, seed):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn((batch,) + tuple(shape), generator=generator)


def _mean_std():
    return torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def box_bounds():
    mean, std = _mean_std()
    return (0 - mean) / std, (1 - mean) / std


# ---------------------------------------------------------------------------------------------
# reduced models (torchvision classes)


class PooledMobileNetV2(mobilenetv2.MobileNetV2):
    """MobileNetV2 whose global average pool is a module (torchvision calls the functional form),
    so that Zennit's AvgPool rule (Norm) reaches it; the exported graph is the same."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def vgg_bn_small():
    features = vgg.make_layers([8, 8, "M", 16, 16, "M", 32, 32, 32, "M"], batch_norm=True)
    model = vgg.VGG(features, num_classes=NUM_CLASSES, init_weights=False)
    model.avgpool = nn.AdaptiveAvgPool2d((2, 2))
    model.classifier = nn.Sequential(nn.Linear(128, 64), nn.ReLU(True), nn.Dropout(), nn.Linear(64, 64),
                                     nn.ReLU(True), nn.Dropout(), nn.Linear(64, NUM_CLASSES))
    return model


def resnet_bottleneck_small():
    model = resnet.ResNet(resnet.Bottleneck, [1, 1, 1, 1], num_classes=NUM_CLASSES)
    model.conv1 = nn.Conv2d(3, 16, kernel_size=7, stride=2, padding=3, bias=False)
    model.bn1 = nn.BatchNorm2d(16)
    model.inplanes = 16
    model.layer1 = model._make_layer(resnet.Bottleneck, 8, 2)
    model.layer2 = model._make_layer(resnet.Bottleneck, 16, 1, stride=2)
    model.layer3 = model._make_layer(resnet.Bottleneck, 32, 1, stride=2)
    model.layer4 = model._make_layer(resnet.Bottleneck, 32, 1, stride=2)
    model.fc = nn.Linear(128, NUM_CLASSES)
    return model


def densenet_small():
    return densenet.DenseNet(growth_rate=8, block_config=(2, 2), num_init_features=16, bn_size=2,
                             num_classes=NUM_CLASSES)


def mobilenet_v2_small():
    setting = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 2, 2], [6, 64, 1, 2]]
    return PooledMobileNetV2(num_classes=NUM_CLASSES, width_mult=0.5, inverted_residual_setting=setting)


def mobilenet_v3_small_small():
    cfg = mobilenetv3.InvertedResidualConfig
    setting = [
        cfg(16, 3, 16, 16, True, "RE", 2, 1, 1.0),
        cfg(16, 3, 40, 24, False, "RE", 2, 1, 1.0),
        cfg(24, 5, 64, 24, True, "HS", 1, 1, 1.0),
        cfg(24, 5, 96, 32, True, "HS", 2, 1, 1.0),
    ]
    return mobilenetv3.MobileNetV3(setting, last_channel=64, num_classes=NUM_CLASSES)


def efficientnet_b0_small():
    cfg = efficientnet.MBConvConfig
    setting = [cfg(1, 3, 1, 16, 8, 1), cfg(6, 3, 2, 8, 16, 2), cfg(6, 5, 2, 16, 24, 1), cfg(6, 3, 2, 24, 32, 1)]
    return efficientnet.EfficientNet(setting, dropout=0.2, num_classes=NUM_CLASSES, last_channel=64)


def squeezenet1_1_small():
    model = squeezenet.SqueezeNet("1_1", num_classes=NUM_CLASSES)
    fire = squeezenet.Fire
    model.features = nn.Sequential(
        nn.Conv2d(3, 16, kernel_size=3, stride=2), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
        fire(16, 4, 8, 8), fire(16, 4, 8, 8),
        nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
        fire(16, 8, 16, 16), fire(32, 8, 16, 16),
        nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
        fire(32, 12, 24, 24), fire(48, 12, 24, 24), fire(48, 16, 32, 32), fire(64, 16, 32, 32),
    )
    model.classifier = nn.Sequential(nn.Dropout(p=0.5), nn.Conv2d(64, NUM_CLASSES, kernel_size=1),
                                     nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d((1, 1)))
    return model


def googlenet_small():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = googlenet.GoogLeNet(num_classes=NUM_CLASSES, aux_logits=False, transform_input=False,
                                    init_weights=False)
    basic, inception = googlenet.BasicConv2d, googlenet.Inception
    model.conv1 = basic(3, 8, kernel_size=7, stride=2, padding=3)
    model.conv2 = basic(8, 8, kernel_size=1)
    model.conv3 = basic(8, 16, kernel_size=3, padding=1)
    model.inception3a = inception(16, 8, 8, 12, 2, 4, 4)     # 28 channels out
    model.inception3b = inception(28, 12, 12, 16, 4, 8, 8)   # 44
    model.inception4a = inception(44, 16, 8, 16, 2, 4, 8)    # 44
    for name in ("inception4b", "inception4c", "inception4d", "inception4e", "inception5a"):
        setattr(model, name, nn.Identity())
    model.inception5b = inception(44, 16, 8, 16, 2, 8, 8)    # 48
    model.fc = nn.Linear(48, NUM_CLASSES)
    return model


def convnext_tiny_small():
    cfg = convnext.CNBlockConfig
    return convnext.ConvNeXt([cfg(16, 32, 2), cfg(32, 64, 1), cfg(64, None, 1)], stochastic_depth_prob=0.0,
                             num_classes=NUM_CLASSES)


class Conv1dNet(nn.Module):
    """A 1-D convolutional classifier for (N, 2, 64) signals."""

    def __init__(self, classes=5):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(2, 8, 5, padding=2), nn.BatchNorm1d(8), nn.ReLU(),
            nn.MaxPool1d(2),
            nn.Conv1d(8, 16, 3, padding=1), nn.BatchNorm1d(16), nn.ReLU(),
            nn.AvgPool1d(2),
            nn.Conv1d(16, 16, 3, padding=2, dilation=2), nn.ReLU(),
            nn.AdaptiveAvgPool1d(1),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(16, classes))

    def forward(self, x):
        return self.classifier(self.features(x))


def mlp():
    return nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 32), nn.ReLU(),
                         nn.Linear(32, 5))


#: name -> (builder, input shape of one sample, zennit canonizer family or None)
SMALL = {
    "vgg16_bn": (vgg_bn_small, (3, 32, 32), "vgg"),
    "resnet50": (resnet_bottleneck_small, (3, 32, 32), "resnet"),
    "densenet121": (densenet_small, (3, 32, 32), None),
    "mobilenet_v2": (mobilenet_v2_small, (3, 32, 32), "mobilenet_v2"),
    "mobilenet_v3_small": (mobilenet_v3_small_small, (3, 32, 32), None),
    "efficientnet_b0": (efficientnet_b0_small, (3, 32, 32), None),
    "squeezenet1_1": (squeezenet1_1_small, (3, 48, 48), None),
    "googlenet": (googlenet_small, (3, 32, 32), None),
    "convnext_tiny": (convnext_tiny_small, (3, 32, 32), None),
    "conv1d": (Conv1dNet, (2, 64), None),
    "mlp": (mlp, (20,), None),
}


def full_googlenet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return googlenet.GoogLeNet(num_classes=1000, aux_logits=False, transform_input=False, init_weights=False)


def full_mobilenet_v2():
    return PooledMobileNetV2()


FULL = {
    "vgg16_bn": (lambda: torchvision.models.vgg16_bn(weights=None), (3, 224, 224), "vgg"),
    "resnet50": (lambda: torchvision.models.resnet50(weights=None), (3, 224, 224), "resnet"),
    "densenet121": (lambda: torchvision.models.densenet121(weights=None), (3, 224, 224), None),
    "mobilenet_v2": (full_mobilenet_v2, (3, 224, 224), "mobilenet_v2"),
    "mobilenet_v3_small": (lambda: torchvision.models.mobilenet_v3_small(weights=None), (3, 224, 224), None),
    "efficientnet_b0": (lambda: torchvision.models.efficientnet_b0(weights=None), (3, 224, 224), None),
    "squeezenet1_1": (lambda: torchvision.models.squeezenet1_1(weights=None), (3, 224, 224), None),
    "googlenet": (full_googlenet, (3, 224, 224), None),
    "convnext_tiny": (lambda: torchvision.models.convnext_tiny(weights=None), (3, 224, 224), None),
    "conv1d": (Conv1dNet, (2, 64), None),
    "mlp": (mlp, (20,), None),
}


def build(spec, seed):
    """The model with seeded parameters, and a seeded input batch for it."""
    builder, shape, _ = spec
    torch.manual_seed(seed)
    model = builder()
    calibration = sample_batch(8, shape, seed + 100)
    return randomize_parameters(model, calibration).eval()


def sample_batch(batch, shape, seed):
    if len(shape) == 3 and shape[0] == 3:
        return image_batch(batch, shape[1], seed) if shape[1] == shape[2] else signal_batch(batch, shape, seed)
    return signal_batch(batch, shape, seed)


# ---------------------------------------------------------------------------------------------
# export


def export(model, x, path, exporter):
    kwargs = dict(input_names=["input"], output_names=["logits"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "torchscript":
            torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17,
                              dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}}, **kwargs)
        else:
            batch = torch.export.Dim("N", min=1, max=1024)
            example = x if len(x) > 1 else torch.cat([x, x])  # a batch of 1 would be specialised to 1
            program = torch.onnx.export(model, (example,), dynamo=True, opset_version=18,
                                        dynamic_shapes=({0: batch},), verbose=False, **kwargs)
            program.save(str(path))


# ---------------------------------------------------------------------------------------------
# zennit


def zennit_canonizers(family):
    from zennit.canonizers import SequentialMergeBatchNorm
    from zennit.torchvision import ResNetCanonizer

    if family == "vgg":
        return [SequentialMergeBatchNorm()]
    if family == "resnet":
        return [ResNetCanonizer()]
    if family == "mobilenet_v2":
        return [SequentialMergeBatchNorm(), InvertedResidualSum()]
    raise ValueError(family)


def _inverted_residual_sum():
    from zennit.canonizers import AttributeCanonizer
    from zennit.layer import Sum

    class _InvertedResidualSum(AttributeCanonizer):
        """The residual ``x + conv(x)`` of torchvision's MobileNetV2 blocks as a ``zennit.layer.Sum``
        module (Norm rule), as Zennit's ResNetCanonizer does for ResNet blocks."""

        def __init__(self):
            super().__init__(self._attribute_map)

        @classmethod
        def _attribute_map(cls, name, module):
            if isinstance(module, mobilenetv2.InvertedResidual) and module.use_res_connect:
                return {"forward": cls.forward.__get__(module), "canonizer_sum": Sum()}
            return None

        @staticmethod
        def forward(self, x):
            return self.canonizer_sum(torch.stack([x, self.conv(x)], dim=-1))

    return _InvertedResidualSum


def InvertedResidualSum():  # noqa: N802  (a canonizer class built lazily: zennit is imported on use)
    return _inverted_residual_sum()()


def zennit_composite(name, family, x):
    from zennit.composites import EpsilonAlpha2Beta1Flat, EpsilonGammaBox, EpsilonPlusFlat

    canonizers = zennit_canonizers(family)
    if name == "epsilon_plus_flat":
        return EpsilonPlusFlat(canonizers=canonizers)
    if name == "epsilon_alpha2_beta1_flat":
        return EpsilonAlpha2Beta1Flat(canonizers=canonizers)
    low, high = (b.to(x.dtype).expand_as(x) for b in box_bounds())
    return EpsilonGammaBox(low=low, high=high, canonizers=canonizers)


def zennit_relevance(model, composite, x, target):
    from zennit.attribution import Gradient

    def attr_output(output):
        return nn.functional.one_hot(target, num_classes=output.shape[1]).to(output.dtype) * output

    with Gradient(model=model, composite=composite, attr_output=attr_output) as attributor:
        _, relevance = attributor(x.clone())
    return relevance.detach()


def choose_targets(logits):
    """Predicted class for the first half of the batch, predicted + 3 / + 7 for the rest."""
    target = logits.argmax(dim=1)
    half = (len(target) + 1) // 2
    for index in range(half, len(target)):
        target[index] = (target[index] + (3, 7)[(index - half) % 2]) % logits.shape[1]
    return target


def merge_batchnorm_exactly(model):
    """A copy with every BatchNorm that directly follows a Conv/Linear (depth-first leaf order, as
    Zennit's SequentialMergeBatchNorm) folded into it exactly and replaced by ``nn.Identity``.

    Zennit's own merge leaves the BatchNorm in place with unit statistics, which still divides by
    sqrt(1 + eps): about 5e-6 per BatchNorm, amplified by the residual Norm rules to 1e-4..1e-3 of
    the relevance on these models. Merging exactly first gives the canonical answer without it."""
    model = copy.deepcopy(model)
    leaves = [(name, module) for name, module in model.named_modules() if not list(module.children())]
    for (_, linear), (bn_name, bn) in zip(leaves, leaves[1:]):
        if not isinstance(bn, (nn.BatchNorm1d, nn.BatchNorm2d)) or not isinstance(linear, (nn.Conv1d, nn.Conv2d,
                                                                                           nn.Linear)):
            continue
        with torch.no_grad():
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            shape = (-1,) + (1,) * (linear.weight.dim() - 1)
            bias = linear.bias if linear.bias is not None else torch.zeros_like(bn.running_mean)
            linear.weight.copy_(linear.weight * scale.view(shape))
            linear.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias)
        parent_name, _, attribute = bn_name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, attribute, nn.Identity())
    return model


def write_zennit(name, family, model, x, out_dir):
    with torch.no_grad():
        logits = model(x)
    target = choose_targets(logits)
    low, high = box_bounds()
    model = merge_batchnorm_exactly(model)
    with torch.no_grad():
        merged_error = float((model(x) - logits).abs().max())
    print(f"  exact BatchNorm merge: max|logits - merged logits| {merged_error:.1e}")
    for composite in ZENNIT_COMPOSITES:
        relevance = zennit_relevance(model, zennit_composite(composite, family, x), x, target)
        relevance64 = zennit_relevance(copy.deepcopy(model).double(), zennit_composite(composite, family, x.double()),
                                       x.double(), target)
        noise = float((relevance.double() - relevance64).abs().max() / relevance64.abs().max())
        arrays = {"x": x.numpy(), "target": target.numpy().astype(np.int64),
                  "relevance": relevance.numpy().astype(np.float32), "logits": logits.numpy()}
        if composite == "epsilon_gamma_box":
            arrays["low"], arrays["high"] = low.numpy(), high.numpy()
        np.savez_compressed(out_dir / f"{name}__{composite}.npz", **arrays)
        print(f"  zennit {composite}: float32 vs float64 max|d|/max|R| {noise:.1e}")


# ---------------------------------------------------------------------------------------------
# main


def make_fixtures(out_dir):
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = {}
    for index, (name, spec) in enumerate(SMALL.items()):
        seed = 10 + index
        model = build(spec, seed)
        x = sample_batch(BATCH, spec[1], seed + 1000)
        with torch.no_grad():
            logits = model(x)
        entry = {"input_shape": list(spec[1]), "parameters": sum(p.numel() for p in model.parameters()),
                 "files": {}}
        for exporter in EXPORTERS:
            path = out_dir / f"{name}.{exporter}.onnx"
            start = time.perf_counter()
            export(model, x, path, exporter)
            error = family_report.max_output_error(path, x.numpy(), logits.numpy())
            entry["files"][exporter] = {"file": path.name, "ops": family_report.op_counts(path),
                                        "max_abs_logit_error_vs_torch": float(f"{error:.2e}")}
            print(f"{name} {exporter}: {path.stat().st_size / 1024:.0f} KiB, {time.perf_counter() - start:.1f}s, "
                  f"max|ort - torch| {error:.1e}")
        np.savez_compressed(out_dir / f"{name}__inputs.npz", x=x.numpy(), logits=logits.numpy())
        if spec[2] is not None:
            write_zennit(name, spec[2], model, x, out_dir)
            entry["zennit"] = list(ZENNIT_COMPOSITES)
        manifest[name] = entry
    (out_dir / "MANIFEST.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    total = sum(p.stat().st_size for p in out_dir.iterdir())
    print(f"total {total / 1e6:.2f} MB in {out_dir}")


def run_full(names, size, batch):
    rows = []
    with tempfile.TemporaryDirectory(prefix="onnx-lrp-families-") as tmp:
        for index, name in enumerate(names):
            builder, shape, family = FULL[name]
            if len(shape) == 3 and shape[1] == shape[2]:
                shape = (3, size, size)
            spec = (builder, shape, family)
            model = build(spec, 500 + index)
            x = sample_batch(batch, shape, 600 + index)
            reference = {}
            if family is not None:
                with torch.no_grad():
                    target = choose_targets(model(x))
                # float64: at full size Zennit's own float32 result is up to 5e-3 (VGG-16-BN) away from
                # its float64 one, more than the agreement tolerance; onnx-lrp (float32) is 3e-6 away
                merged, x64 = merge_batchnorm_exactly(model).double(), x.double()
                for composite in ("epsilon_plus_flat", "epsilon_gamma_box"):
                    start = time.perf_counter()
                    reference[composite] = (target.numpy(), zennit_relevance(
                        merged, zennit_composite(composite, family, x64), x64, target).numpy())
                    print(f"{name}: zennit {composite} {time.perf_counter() - start:.1f}s")
            for exporter in EXPORTERS:
                path = pathlib.Path(tmp) / f"{name}.{exporter}.onnx"
                start = time.perf_counter()
                export(model, x, path, exporter)
                print(f"{name} {exporter}: exported in {time.perf_counter() - start:.1f}s")
                rows += family_report.evaluate(name, exporter, path, x.numpy(), reference)
                path.unlink()
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=pathlib.Path, default=FIXTURES)
    parser.add_argument("--table", action="store_true", help="print the table for the stored reduced models")
    parser.add_argument("--full", action="store_true", help="full-size models instead of writing fixtures")
    parser.add_argument("--families", default=",".join(FULL), help="comma-separated names for --full")
    parser.add_argument("--size", type=int, default=224, help="image size for --full (default 224)")
    parser.add_argument("--batch", type=int, default=2, help="batch size for --full (default 2)")
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}")
    if args.full:
        names = [n for n in args.families.split(",") if n]
        unknown = sorted(set(names) - set(FULL))
        if unknown:
            parser.error(f"unknown families {unknown}; choose from {list(FULL)}")
        family_report.print_table(run_full(names, args.size, args.batch))
    elif args.table:
        family_report.print_table(family_report.evaluate_stored(args.out))
    else:
        make_fixtures(args.out)


if __name__ == "__main__":
    main()
