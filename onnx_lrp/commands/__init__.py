"""Subcommands of the ``onnx-lrp`` command line, one module each; see :mod:`onnx_lrp.cli`."""
