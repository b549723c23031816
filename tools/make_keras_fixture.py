#!/usr/bin/env python
"""Build tests/fixtures/exporters/keras_cnn.onnx: a Keras model converted by tf2onnx.

Needs an environment with ``tensorflow-cpu`` and ``tf2onnx`` (not the project's dev extra; e.g.
``python -m venv /tmp/tf && /tmp/tf/bin/pip install tensorflow-cpu tf2onnx numpy``). The stored
file was built with tensorflow-cpu 2.21.0, keras 3.15.1, tf2onnx 1.17.0::

    python tools/make_keras_fixture.py              # writes the fixture
    python tools/make_keras_fixture.py --out DIR

The model is NHWC, as Keras builds it, so the exported graph starts with tf2onnx's layout
Transposes, and it exercises what tf2onnx emits for: Conv2D with a folded BatchNormalization,
DepthwiseConv2D, swish (x·sigmoid(x)), a squeeze-excitation gate (Multiply by a sigmoid),
a residual Add, MaxPooling2D, UpSampling2D(bilinear) (Resize), AveragePooling2D, Concatenate,
GlobalAveragePooling2D (+ Squeeze), Dense (MatMul + Add) and tanh-approximated GELU spelled out
with Pow/Tanh/Mul/Add. Weights are seeded: He-normal kernels, biases U[-0.2, 0.2], BatchNorm
gamma U[0.5, 1.5], beta U[-0.3, 0.3], moving mean N(0, 0.1), moving variance U[0.5, 1.5].
The inputs and Keras's logits are stored beside the model (``keras_cnn__inputs.npz``).
"""
import argparse
import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf2onnx  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "exporters"


def build():
    tf.keras.utils.set_random_seed(0)
    layers = tf.keras.layers
    inputs = tf.keras.Input((16, 16, 3), name="input")
    x = layers.Conv2D(8, 3, padding="same")(inputs)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    y = layers.DepthwiseConv2D(3, padding="same")(x)
    y = layers.Activation("swish")(y)
    gate = layers.GlobalAveragePooling2D(keepdims=True)(y)
    gate = layers.Conv2D(2, 1, activation="relu")(gate)
    gate = layers.Conv2D(8, 1, activation="sigmoid")(gate)
    y = layers.Multiply()([y, gate])
    x = layers.Add()([x, y])
    x = layers.MaxPooling2D(2)(x)
    up = layers.UpSampling2D(2, interpolation="bilinear")(x)
    up = layers.Conv2D(8, 3, padding="same", activation="relu")(up)
    up = layers.AveragePooling2D(2)(up)
    x = layers.Concatenate()([x, up])
    x = layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(16)(x)
    x = layers.Activation(lambda t: tf.keras.activations.gelu(t, approximate=True))(x)
    outputs = layers.Dense(5, name="logits")(x)
    model = tf.keras.Model(inputs, outputs)
    randomize(model, np.random.default_rng(0))
    return model


def randomize(model, rng):
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            c = weights[0].shape
            layer.set_weights([rng.uniform(0.5, 1.5, c), rng.uniform(-0.3, 0.3, c), rng.normal(0, 0.1, c),
                               rng.uniform(0.5, 1.5, c)])
            continue
        kernel, rest = weights[0], weights[1:]
        fan_in = int(np.prod(kernel.shape[:-1])) if not isinstance(layer, tf.keras.layers.DepthwiseConv2D) \
            else int(np.prod(kernel.shape[:2]))
        new = [rng.normal(0, np.sqrt(2.0 / fan_in), kernel.shape)] + [rng.uniform(-0.2, 0.2, b.shape) for b in rest]
        layer.set_weights([w.astype(np.float32) for w in new])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=pathlib.Path, default=OUT)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    model = build()
    spec = (tf.TensorSpec((None, 16, 16, 3), tf.float32, name="input"),)

    @tf.function(input_signature=spec)
    def forward(x):
        return model(x, training=False)

    proto, _ = tf2onnx.convert.from_function(forward, input_signature=spec, opset=17)
    path = args.out / "keras_cnn.onnx"
    onnx.save(proto, str(path))
    x = np.random.default_rng(1).standard_normal((3, 16, 16, 3)).astype(np.float32)
    logits = model(x, training=False).numpy()
    np.savez_compressed(args.out / "keras_cnn__inputs.npz", x=x, logits=logits)
    print(f"tensorflow {tf.__version__}, keras {tf.keras.__version__}, tf2onnx {tf2onnx.__version__}")
    print(f"{path}: {path.stat().st_size / 1024:.0f} KiB; ops "
          f"{sorted({n.op_type for n in proto.graph.node})}; output {proto.graph.output[0].name!r}")


if __name__ == "__main__":
    main()
