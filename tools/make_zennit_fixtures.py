#!/usr/bin/env python
"""Build the Zennit reference fixtures that onnx-lrp's agreement tests compare against.

Run with an environment that has torch, torchvision and zennit (the ``dev`` extra)::

    python tools/make_zennit_fixtures.py            # writes tests/fixtures/zennit/
    python tools/make_zennit_fixtures.py --out DIR  # writes elsewhere, e.g. to diff a rebuild
    python tools/make_zennit_fixtures.py --full     # full-size VGG-16-BN / ResNet-18 vs onnx_lrp

The models are reduced versions of torchvision's own VGG and ResNet classes (so that Zennit's
canonizers recognise their modules), with seeded random parameters: weights, biases and every
BatchNorm weight/bias/running_mean/running_var are nonzero, so that bias handling and BatchNorm
folding are exercised. For each model and composite, Zennit's ``Gradient`` attributor is run in
float32 with the output relevance ``one_hot(target) * logits``; the result is stored with the
input, targets and logits in ``<model>__<composite>.npz`` next to ``<model>.onnx``.

Besides writing the fixtures, the script prints checks that do not need onnx_lrp: onnxruntime's
logits against torch's, the float32 relevance against a float64 run of the same composite (how
much float32 noise an agreement test must tolerate), the rule Zennit assigned to every module,
and a conservation check on bias-free copies of the models.
"""
import argparse
import copy
import pathlib
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort
import torch
import torchvision
import zennit
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck
from zennit.attribution import Gradient
from zennit.canonizers import SequentialMergeBatchNorm
from zennit.composites import (
    EpsilonAlpha2Beta1Flat,
    EpsilonGammaBox,
    EpsilonPlusFlat,
    LayerMapComposite,
    layer_map_base,
)
from zennit.rules import Epsilon
from zennit.torchvision import ResNetCanonizer
from zennit.types import Convolution

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from batchnorm_calibration import calibrate_batchnorm  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "zennit"

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BATCH = 4
NUM_CLASSES = 10
OPSET = 17


# ---------------------------------------------------------------------------------------------
# models


def randomize_parameters(model, calibration):
    """Give every parameter and BatchNorm statistic a seeded, nonzero, well-scaled value.

    Weights are He-normal, biases uniform in [-0.2, 0.2], BatchNorm weights in [0.5, 1.5] and
    biases in [-0.3, 0.3]. The running statistics are first measured on ``calibration`` (so that
    activations keep a sane scale through the depth) and then perturbed: mean + N(0, 0.05),
    var * U(0.8, 1.25), so the folded biases are nonzero and running_var stays positive.
    Uses the global torch RNG; seed it before calling.
    """
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            fan_in = module.weight[0].numel()
            module.weight.data = torch.randn(module.weight.shape) * (2.0 / fan_in) ** 0.5
            if module.bias is not None:
                module.bias.data = (torch.rand(module.bias.shape) * 2 - 1) * 0.2
        elif isinstance(module, nn.BatchNorm2d):
            module.weight.data = 0.5 + torch.rand(module.weight.shape)
            module.bias.data = (torch.rand(module.bias.shape) * 2 - 1) * 0.3

    calibrate_batchnorm(model, calibration, nn.BatchNorm2d)
    return model


def build_vgg_bn_small():
    """torchvision VGG with a 4-conv BN feature stack, global average pool, 2-layer classifier."""
    torch.manual_seed(1)
    features = torchvision.models.vgg.make_layers([16, "M", 32, "M", 64, 64, "M"], batch_norm=True)
    model = torchvision.models.VGG(features=features, num_classes=NUM_CLASSES, init_weights=False)
    model.avgpool = nn.AdaptiveAvgPool2d(1)
    model.classifier = nn.Sequential(
        nn.Linear(64, 64),
        nn.ReLU(inplace=True),
        nn.Dropout(p=0.5),
        nn.Linear(64, NUM_CLASSES),
    )
    return randomize_parameters(model, imagenet_like_batch(32, 32, seed=101))


def build_resnet_small(block, seed):
    """torchvision ResNet narrowed to base width 16, stages of (2, 1, 1) ``block``s, layer4 removed.

    The stem and the stages are rebuilt with ResNet's own ``_make_layer``, so every block is a
    torchvision BasicBlock/Bottleneck (with its downsample Sequential) and Zennit's
    ResNetCanonizer applies. Assigning to existing attributes keeps the module order.
    """
    torch.manual_seed(seed)
    model = torchvision.models.ResNet(block, [1, 1, 1, 1], num_classes=NUM_CLASSES)
    model.conv1 = nn.Conv2d(3, 16, kernel_size=7, stride=2, padding=3, bias=False)
    model.bn1 = nn.BatchNorm2d(16)
    model.inplanes = 16
    model.layer1 = model._make_layer(block, 16, 2)
    model.layer2 = model._make_layer(block, 32, 1, stride=2)
    model.layer3 = model._make_layer(block, 64, 1, stride=2)
    model.layer4 = nn.Identity()
    model.fc = nn.Linear(64 * block.expansion, NUM_CLASSES)
    return randomize_parameters(model, imagenet_like_batch(32, 32, seed=seed + 100))


def build_vgg16_bn_full():
    torch.manual_seed(11)
    model = torchvision.models.vgg16_bn(weights=None)
    return randomize_parameters(model, imagenet_like_batch(4, 224, seed=111))


def build_resnet18_full():
    torch.manual_seed(12)
    model = torchvision.models.resnet18(weights=None)
    return randomize_parameters(model, imagenet_like_batch(8, 224, seed=112))


SMALL_MODELS = {
    "vgg_bn_small": (build_vgg_bn_small, "vgg"),
    "resnet18_small": (lambda: build_resnet_small(BasicBlock, seed=2), "resnet"),
    "resnet_bottleneck_small": (lambda: build_resnet_small(Bottleneck, seed=3), "resnet"),
}
FULL_MODELS = {
    "vgg16_bn": (build_vgg16_bn_full, "vgg"),
    "resnet18": (build_resnet18_full, "resnet"),
}


# ---------------------------------------------------------------------------------------------
# inputs, composites, attribution


def imagenet_like_batch(batch, size, seed):
    """u ~ U[0, 1) images normalised with ImageNet mean/std, so values are negative and positive."""
    generator = torch.Generator().manual_seed(seed)
    u = torch.rand((batch, 3, size, size), generator=generator)
    return (u - mean_std()[0]) / mean_std()[1]


def mean_std():
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return mean, std


def box_bounds():
    """The normalised images of pixel values 0 and 1, per channel, shape (1, 3, 1, 1)."""
    mean, std = mean_std()
    return (0 - mean) / std, (1 - mean) / std


def canonizers_for(family):
    if family == "vgg":
        return [SequentialMergeBatchNorm()]
    if family == "resnet":
        return [ResNetCanonizer()]
    raise ValueError(f"unknown model family {family!r}")


def make_composite(name, family, x):
    """A fresh Zennit composite (they hold per-registration state) with the model's canonizers."""
    canonizers = canonizers_for(family)
    if name == "epsilon_plus_flat":
        return EpsilonPlusFlat(canonizers=canonizers)
    if name == "epsilon_alpha2_beta1_flat":
        return EpsilonAlpha2Beta1Flat(canonizers=canonizers)
    if name == "epsilon_gamma_box":
        low, high = (bound.to(x.dtype).expand_as(x) for bound in box_bounds())
        return EpsilonGammaBox(low=low, high=high, canonizers=canonizers)
    raise ValueError(f"unknown composite {name!r}")


def make_epsilon_composite(family, epsilon):
    """Epsilon everywhere (Zennit 0.5.1 registers no such preset), for the conservation check."""
    layer_map = layer_map_base(stabilizer=epsilon) + [
        (Convolution, Epsilon(epsilon=epsilon)),
        (nn.Linear, Epsilon(epsilon=epsilon)),
    ]
    return LayerMapComposite(layer_map=layer_map, canonizers=canonizers_for(family))


COMPOSITES = ("epsilon_plus_flat", "epsilon_alpha2_beta1_flat", "epsilon_gamma_box")


def zennit_relevance(model, composite, x, target):
    """Zennit's LRP with output relevance one_hot(target) * output; returns (output, relevance)."""
    def attr_output(output):
        return nn.functional.one_hot(target, num_classes=output.shape[1]).to(output.dtype) * output

    with Gradient(model=model, composite=composite, attr_output=attr_output) as attributor:
        output, relevance = attributor(x.clone())
    return output.detach(), relevance.detach()


def rule_table(model, composite):
    """Module name -> Zennit hook class, as the composite assigns them (canonizers applied)."""
    table = {}
    composite.register(model)
    try:
        for name, module in model.named_modules():
            for hook in module._forward_pre_hooks.values():
                owner = getattr(hook, "__self__", None)
                if isinstance(owner, zennit.core.Hook):
                    table[name] = type(owner).__name__
    finally:
        composite.remove()
    return table


def choose_targets(logits):
    """The predicted class for the first half of the batch; for the second half a class at a fixed
    offset (3, then 7, alternating) from the prediction, so never the predicted one."""
    predicted = logits.argmax(dim=1)
    target = predicted.clone()
    first_half = (len(target) + 1) // 2
    for index in range(first_half, len(target)):
        offset = (3, 7)[(index - first_half) % 2]
        target[index] = (predicted[index] + offset) % logits.shape[1]
    return target


# ---------------------------------------------------------------------------------------------
# comparisons


def pearson(a, b):
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    return float(np.corrcoef(a, b)[0, 1])


def relative_max_error(actual, reference):
    actual = np.asarray(actual, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    return float(np.abs(actual - reference).max() / np.abs(reference).max())


def per_sample(metric, actual, reference):
    return [metric(a, r) for a, r in zip(actual, reference)]


def export_onnx(model, x, path):
    torch.onnx.export(
        model,
        (x,),
        str(path),
        dynamo=False,
        opset_version=OPSET,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )


def onnxruntime_logits(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"input": x.numpy()})[0]


def onnx_op_counts(path):
    import onnx

    counts = {}
    for node in onnx.load(str(path)).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def without_biases(model):
    """Copy with every bias, BatchNorm bias and running_mean zeroed: folded biases are then 0."""
    model = copy.deepcopy(model)
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)) and module.bias is not None:
            module.bias.data.zero_()
        elif isinstance(module, nn.BatchNorm2d):
            module.bias.data.zero_()
            module.running_mean.zero_()
    return model


def print_conservation(name, family, model, x, target):
    """Sum of input relevance vs. target logit on the bias-free copy; printed, never asserted."""
    model = without_biases(model)
    with torch.no_grad():
        logits = model(x)
    picked = logits[torch.arange(len(target)), target]
    print(f"  conservation on bias-free {name} (sum R / target logit):")
    runs = [("epsilon(1e-9)", make_epsilon_composite(family, 1e-9))]
    runs += [(composite, make_composite(composite, family, x)) for composite in COMPOSITES]
    for label, composite in runs:
        _, relevance = zennit_relevance(model, composite, x, target)
        ratios = relevance.flatten(1).sum(1) / picked
        print(f"    {label:27s} " + " ".join(f"{float(r):.6f}" for r in ratios))


# ---------------------------------------------------------------------------------------------
# fixtures


def make_fixtures(out_dir):
    out_dir.mkdir(parents=True, exist_ok=True)
    low, high = box_bounds()
    for model_index, (name, (build, family)) in enumerate(SMALL_MODELS.items()):
        model = build().eval()
        x = imagenet_like_batch(BATCH, 32, seed=1000 + model_index)
        with torch.no_grad():
            logits = model(x)
        target = choose_targets(logits)

        onnx_path = out_dir / f"{name}.onnx"
        export_onnx(model, x, onnx_path)
        ort_error = np.abs(onnxruntime_logits(onnx_path, x) - logits.numpy()).max()
        params = sum(p.numel() for p in model.parameters())
        print(f"{name}: {params} parameters, targets {target.tolist()}, "
              f"predicted {logits.argmax(1).tolist()}, max|ort - torch| logits {ort_error:.2e}")
        print(f"  onnx ops: {onnx_op_counts(onnx_path)}")

        for composite_name in COMPOSITES:
            table = rule_table(model, make_composite(composite_name, family, x))
            print(f"  {composite_name} rules: {table}")
            output, relevance = zennit_relevance(
                model, make_composite(composite_name, family, x), x, target)

            model64 = copy.deepcopy(model).double()
            x64 = x.double()
            _, relevance64 = zennit_relevance(
                model64, make_composite(composite_name, family, x64), x64, target)
            with torch.no_grad():
                unchanged = torch.equal(model(x), logits)

            arrays = {
                "x": x.numpy().astype(np.float32),
                "target": target.numpy().astype(np.int64),
                "relevance": relevance.numpy().astype(np.float32),
                "logits": logits.numpy().astype(np.float32),
            }
            if composite_name == "epsilon_gamma_box":
                arrays["low"] = low.numpy().astype(np.float32)
                arrays["high"] = high.numpy().astype(np.float32)
            np.savez_compressed(out_dir / f"{name}__{composite_name}.npz", **arrays)

            sums = relevance.flatten(1).sum(1)
            picked = logits[torch.arange(BATCH), target]
            print(f"  {composite_name}: sum R / target logit "
                  + " ".join(f"{float(s / p):.4f}" for s, p in zip(sums, picked)))
            print(f"    zennit output vs plain logits max|d| {float((output - logits).abs().max()):.2e}; "
                  f"model restored after attribution: {unchanged}")
            print("    float32 vs float64 zennit: max|d|/max|R| "
                  + " ".join(f"{e:.2e}" for e in per_sample(relative_max_error, relevance, relevance64))
                  + "; pearson "
                  + " ".join(f"{p:.9f}" for p in per_sample(pearson, relevance, relevance64)))
        print_conservation(name, family, model, x, target)

    total = 0
    for path in sorted(out_dir.iterdir()):
        total += path.stat().st_size
        print(f"{path.name:50s} {path.stat().st_size / 1024:8.1f} KiB")
    print(f"{'total':50s} {total / 1024:8.1f} KiB")


# ---------------------------------------------------------------------------------------------
# --full: full-size models, Zennit against onnx_lrp directly


def compare_full(batch):
    try:
        import onnx_lrp
    except ImportError as error:
        sys.exit(f"--full needs onnx_lrp importable ({error}); "
                 f"install it with: pip install -e {ROOT} --no-deps")
    low, high = box_bounds()
    with tempfile.TemporaryDirectory(prefix="onnx-lrp-full-") as tmp:
        for model_index, (name, (build, family)) in enumerate(FULL_MODELS.items()):
            model = build().eval()
            x = imagenet_like_batch(batch, 224, seed=2000 + model_index)
            with torch.no_grad():
                logits = model(x)
            target = choose_targets(logits)
            onnx_path = pathlib.Path(tmp) / f"{name}.onnx"
            export_onnx(model, x, onnx_path)
            print(f"{name}: targets {target.tolist()}")
            for composite_name in COMPOSITES:
                start = time.perf_counter()
                _, reference = zennit_relevance(model, make_composite(composite_name, family, x), x, target)
                zennit_s = time.perf_counter() - start
                if composite_name == "epsilon_gamma_box":
                    composite = onnx_lrp.composites.EpsilonGammaBox(low=low.numpy(), high=high.numpy())
                else:
                    composite = composite_name
                start = time.perf_counter()
                explainer = onnx_lrp.Explainer(str(onnx_path), composite=composite)
                result = explainer.explain(x.numpy(), target=target.numpy())
                ours_s = time.perf_counter() - start
                reference = reference.numpy()
                correlations = per_sample(pearson, result.relevance, reference)
                errors = per_sample(relative_max_error, result.relevance, reference)
                output_error = np.abs(np.asarray(result.output) - logits.numpy()).max()
                print(f"  {composite_name:27s} pearson " + " ".join(f"{c:.6f}" for c in correlations)
                      + "  max|d|/max|R| " + " ".join(f"{e:.2e}" for e in errors)
                      + f"  max|d logits| {output_error:.2e}"
                      + f"  zennit {zennit_s:.1f}s, onnx_lrp (compile+run) {ours_s:.1f}s")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=pathlib.Path, default=FIXTURES,
                        help=f"fixture directory (default: {FIXTURES.relative_to(ROOT)})")
    parser.add_argument("--full", action="store_true",
                        help="compare Zennit with onnx_lrp on full-size VGG-16-BN and ResNet-18 at "
                             "224x224 instead of writing fixtures (writes only to a temp dir)")
    parser.add_argument("--batch", type=int, default=2, help="batch size for --full (default 2)")
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
          f"zennit {zennit_version()}, onnxruntime {ort.__version__}")
    if args.full:
        compare_full(args.batch)
    else:
        make_fixtures(args.out)


def zennit_version():
    from importlib.metadata import version

    return version("zennit")


if __name__ == "__main__":
    main()
