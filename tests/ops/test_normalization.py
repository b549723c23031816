"""BatchNormalization left unfolded (no linear op before it) and LRN."""
import numpy as np
import pytest

from onnx_lrp.errors import UnsupportedOp

from .harness import F64, Case, check_op, node_model

RNG = np.random.default_rng(11)


def bn_stats(c):
    scale = RNG.standard_normal(c).astype(np.float32)
    bias = RNG.standard_normal(c).astype(np.float32)
    mean = RNG.standard_normal(c).astype(np.float32)
    var = RNG.uniform(0.2, 2.0, c).astype(np.float32)
    return [scale, bias, mean, var]


@pytest.mark.parametrize("sample", [(3, 4, 5), (3,), (2, 3), (2, 3, 2, 2)])
@pytest.mark.parametrize("epsilon", [1e-5, 0.1])
def test_batchnorm(sample, epsilon):
    model = node_model("BatchNormalization", sample, ["x", *bn_stats(sample[0])], epsilon=epsilon)
    checked = check_op(model, sample, fd=F64)
    assert checked.case.g.model.graph.node[0].op_type == "BatchNormalization", "it must stay unfolded"
    assert checked.case.handler.category_of(checked.case.node, checked.case.g) == "batchnorm"


def test_batchnorm_training_mode_is_unsupported():
    model = node_model("BatchNormalization", (3, 4), ["x", *bn_stats(3)], n_outputs=3, used_outputs=[0],
                       training_mode=1)
    with pytest.raises(UnsupportedOp, match="training"):
        Case(model, (3, 4))


@pytest.mark.parametrize("attrs", [dict(size=3), dict(size=5, alpha=0.01, beta=0.6, bias=2.0)])
def test_lrn_forward_only(attrs):
    """LRN passes check() and its forward is the node itself; its VJP is not implemented and says so."""
    sample = (6, 3, 4)
    model = node_model("LRN", sample, **attrs)
    case = Case(model, sample)  # check() passes
    assert case.handler.category_of(case.node, case.g) == "pass"
    emitted = case.emit(None, vjp=False)
    x = RNG.standard_normal((3, *sample)).astype(np.float32)
    result = emitted.run({"x": x})
    np.testing.assert_allclose(result["fwd"], result["node0"], rtol=1e-5)
    assert result["fwd"].shape == x.shape
    with pytest.raises(UnsupportedOp, match="no gradient is implemented") as err:
        case.emit(None)
    assert "LRN" in str(err.value) and case.node.name in str(err.value)
