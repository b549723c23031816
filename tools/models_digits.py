"""A scikit-learn MLP on the 8x8 digits bundled with scikit-learn, exported with skl2onnx.

``sklearn.datasets.load_digits`` ships inside scikit-learn (no download): 1797 images of 8x8
ink intensities 0-16. Features are ``v / 16`` in 0-1, flattened row by row to 64 values.
The split and the training are seeded, so a rebuild with the same package versions gives the
same weights.
"""

from __future__ import annotations

import numpy as np

LABELS = [str(d) for d in range(10)]
SEED = 0
HIDDEN = (64, 32)
TEST_FRACTION = 0.2


def load_split():
    """(X_train, X_test, y_train, y_test) with X as the raw 0-16 integer values."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    return train_test_split(digits.data.astype(np.uint8), digits.target.astype(np.int64),
                            test_size=TEST_FRACTION, random_state=SEED, stratify=digits.target)


def features(raw: np.ndarray) -> np.ndarray:
    return (raw.astype(np.float32) / np.float32(16.0)).reshape(len(raw), 64)


def train(x_train: np.ndarray, y_train: np.ndarray):
    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier(hidden_layer_sizes=HIDDEN, activation="relu", solver="adam",
                        alpha=1e-4, max_iter=1000, random_state=SEED)
    return clf.fit(x_train, y_train)


def export(clf):
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    return to_onnx(clf, initial_types=[("input", FloatTensorType([None, 64]))],
                   options={id(clf): {"zipmap": False}}, target_opset=17)
