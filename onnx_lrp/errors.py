"""Errors raised by onnx-lrp.

Every failure the user can cause or fix is an :class:`OnnxLrpError`; the message names the
file, node, op type or tensor involved and says what to do about it.
"""


class OnnxLrpError(Exception):
    """Base class of every error onnx-lrp raises on purpose."""


class ModelLoadError(OnnxLrpError):
    """The model file is missing, unreadable, or not a valid ONNX model."""


class TensorTooLarge(ModelLoadError):
    """A tensor the model declares or computes has more elements than onnx-lrp allocates
    (:data:`onnx_lrp.screen.MAX_TENSOR_ELEMENTS`)."""


class UnsupportedOp(OnnxLrpError):
    """A node has an op type (or attribute combination) no handler can propagate relevance through."""


class InvalidInput(OnnxLrpError):
    """The input array has the wrong rank, shape or dtype, or holds NaN/Inf."""


class InvalidTarget(OnnxLrpError):
    """The requested target class is out of range or malformed."""


class CompositeError(OnnxLrpError):
    """An unknown composite or rule name, or a malformed override."""


class OutputError(OnnxLrpError):
    """A result could not be written (missing or unwritable output path)."""


class NonFiniteRelevance(OnnxLrpError):
    """The relevance of a sample is inf or NaN: float32 overflowed in the model or the relevance
    pass (never returned as an answer)."""
