"""Op handlers, one module per op family; see :mod:`onnx_lrp.ops.registry`."""
