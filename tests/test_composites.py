"""Composites: identity (repr, ==, hash include the parameters) and validation of their maps."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import onnx_lrp
from eval_models import relu_mlp
from onnx_lrp import CompositeError, composites, rules
from onnx_lrp.attribution import attributor
from onnx_lrp.composites import Composite, EpsilonComposite, EpsilonGammaBox


@pytest.fixture(scope="module")
def mlp():
    return relu_mlp((8,), 16, 3, seed=5)


def test_identity_includes_parameters():
    assert EpsilonComposite(epsilon=100) != EpsilonComposite(epsilon=1e-6)
    assert EpsilonComposite(epsilon=100) == EpsilonComposite(epsilon=100.0)
    assert hash(EpsilonComposite(epsilon=100)) == hash(EpsilonComposite(epsilon=100.0))
    assert repr(EpsilonComposite(epsilon=100)) == "EpsilonComposite(epsilon=100)"
    box = EpsilonGammaBox(low=[0, 0, 0], high=[1, 1, 2])
    assert box != EpsilonGammaBox(low=[0, 0, 0], high=[1, 1, 1])
    assert "high=[1.0, 1.0, 2.0]" in repr(box)
    with_map = composites.get("epsilon", name_map={"Relu_2": rules.Pass()})
    assert with_map != EpsilonComposite() and "name_map={'Relu_2': Pass()}" in repr(with_map)
    assert Composite(category_map={"gate": rules.Uniform()}) != Composite()
    assert rules.Epsilon(0.25) == rules.Epsilon(0.25) and rules.Epsilon(0.25) != rules.Epsilon(0.5)
    assert rules.ZBox(np.zeros((1, 3, 1, 1)), 1.0) != rules.ZBox(np.zeros((1, 3, 1, 1)), 2.0)


def test_attributor_caches_one_explainer_per_composite_value(mlp):
    """lrp(EpsilonComposite(epsilon=100)) after epsilon=1e-6 once returned the first explainer's relevance."""
    x = np.random.default_rng(3).standard_normal((4, 8)).astype(np.float32)
    a = attributor(onnx_lrp.Explainer(mlp))
    small = a.lrp(EpsilonComposite(epsilon=1e-6)).explain(x).relevance
    large = a.lrp(EpsilonComposite(epsilon=100)).explain(x).relevance
    expected = onnx_lrp.Explainer(mlp, composite=EpsilonComposite(epsilon=100)).explain(x).relevance
    np.testing.assert_allclose(large, expected, rtol=1e-6, atol=1e-7)
    assert not np.allclose(small, large)  # ε = 100 absorbs most of the relevance
    assert a.lrp(EpsilonComposite(epsilon=100)) is a.lrp(EpsilonComposite(epsilon=100.0))


def test_unknown_category_names_close_ones():
    with pytest.raises(CompositeError, match=r"unknown category 'gates' \(did you mean 'gate'\?\)"):
        Composite(category_map={"gates": rules.Uniform()})
    with pytest.raises(CompositeError, match="'convolutions'"):
        composites.get("epsilon", category_map={"convolutions": rules.Gamma()})


def test_category_without_rule_is_a_composite_error_not_a_key_error(mlp):
    composite = Composite()
    del composite.layer_map["dense"]
    with pytest.raises(CompositeError, match="category 'dense'.*category_map"):
        onnx_lrp.Explainer(mlp, composite=composite).explain(np.ones((1, 8), np.float32))


def test_unknown_node_name_raises_or_warns(mlp):
    with pytest.raises(CompositeError, match=r"unknown node 'Relu2' \(did you mean 'Relu_2'"):
        onnx_lrp.Explainer(mlp, name_map={"Relu2": rules.Pass()})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        onnx_lrp.Explainer(mlp, composite=EpsilonComposite(name_map={"Relu2": rules.Pass()}, unmatched="warn"))
    assert any("Relu2" in str(w.message) for w in caught)


def test_unknown_op_type_names_close_ones(mlp):
    with pytest.raises(CompositeError, match=r"unknown op type 'Gem' \(did you mean 'Gemm'"):
        onnx_lrp.Explainer(mlp, type_map={"Gem": rules.Pass()})
    onnx_lrp.Explainer(mlp, type_map={"Conv": rules.Gamma()})  # an op type absent from this model is fine
