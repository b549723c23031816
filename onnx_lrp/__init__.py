"""onnx-lrp: Layer-wise Relevance Propagation for any model exported to ONNX."""
from . import composites, rules
from .composites import Composite
from .errors import (CompositeError, InvalidInput, InvalidTarget, ModelLoadError, NonFiniteRelevance, OnnxLrpError,
                     OutputError, TensorTooLarge, UnsupportedOp)
from .explainer import Explainer, Explanation

__version__ = "0.1.0"
__all__ = ["Explainer", "Explanation", "Composite", "composites", "rules", "OnnxLrpError", "ModelLoadError",
           "TensorTooLarge", "UnsupportedOp", "InvalidInput", "InvalidTarget", "CompositeError", "OutputError",
           "NonFiniteRelevance"]
