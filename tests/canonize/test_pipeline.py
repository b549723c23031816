"""canonize(): all passes together on random small networks keep the logits and leave the
canonical form (no BatchNormalization, no constant Add after a linear op, no Identity, no Softmax)."""
from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import helper

from canon_helpers import bn_node, bn_params, make_model, op_counts, run, vi
from onnx_lrp.canonize import canonize
from onnx_lrp.graph import load_model


@st.composite
def networks(draw):
    seed = draw(st.integers(0, 2**16))
    r = np.random.default_rng(seed)
    c_in = draw(st.sampled_from([1, 2, 4]))
    blocks = draw(st.integers(1, 3))
    nodes, inits, x, c = [], {}, "x", c_in
    for i in range(blocks):
        group = draw(st.sampled_from([1, c])) if i else 1
        c_out = draw(st.sampled_from([2, 4])) * (group if group > 1 else 1)
        op = draw(st.sampled_from(["Conv", "ConvTranspose"])) if group == 1 else "Conv"
        w_shape = (c_out, c // group, 3, 3) if op == "Conv" else (c, c_out, 3, 3)
        inits[f"w{i}"] = r.standard_normal(w_shape).astype(np.float32) * 0.5
        ins = [x, f"w{i}"]
        if draw(st.booleans()):
            inits[f"b{i}"] = r.standard_normal(c_out).astype(np.float32)
            ins.append(f"b{i}")
        attrs = {"pads": [1, 1, 1, 1]} if op == "Conv" else {"pads": [1, 1, 1, 1]}
        if group > 1:
            attrs["group"] = group
        nodes.append(helper.make_node(op, ins, [f"z{i}"], name=f"lin{i}", **attrs))
        h = f"z{i}"
        tail = draw(st.sampled_from(["bn", "add", "bn_add", "none"]))
        if "bn" in tail:
            inits.update(bn_params(f"bn{i}", c_out, seed + i))
            nodes.append(bn_node(f"bn{i}", h, f"n{i}"))
            h = f"n{i}"
        if "add" in tail:
            shape = draw(st.sampled_from([(c_out, 1, 1), (1, c_out, 1, 1), ()]))
            inits[f"k{i}"] = r.standard_normal(shape).astype(np.float32)
            nodes.append(helper.make_node("Add", [h, f"k{i}"], [f"a{i}"], name=f"add{i}"))
            h = f"a{i}"
        if draw(st.booleans()):
            nodes.append(helper.make_node("Identity", [h], [f"id{i}"], name=f"id{i}"))
            h = f"id{i}"
        nodes.append(helper.make_node("Relu", [h], [f"r{i}"], name=f"relu{i}"))
        x, c = f"r{i}", c_out
    inits["wf"] = r.standard_normal((c, 3)).astype(np.float32)
    inits["bf"] = r.standard_normal(3).astype(np.float32)
    nodes += [helper.make_node("GlobalAveragePool", [x], ["g"], name="gap"),
              helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
              helper.make_node("MatMul", ["f", "wf"], ["mm"], name="fc"),
              helper.make_node("Add", ["mm", "bf"], ["logits"], name="fc_bias"),
              helper.make_node("Softmax", ["logits"], ["prob"], name="softmax", axis=-1)]
    model = make_model(nodes, [vi("x", ["N", c_in, 5, 5])], [vi("prob", ["N", 3])], inits)
    return model, r.standard_normal((2, c_in, 5, 5)).astype(np.float32)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(networks())
def test_canonized_network_keeps_the_logits(case):
    model, x = case
    proto, _ = load_model(model)
    canon = canonize(proto, "prob")
    assert canon.output == "logits" and canon.stripped == "Softmax"
    counts = op_counts(canon.model)
    for op in ("BatchNormalization", "Add", "Identity", "Softmax", "MatMul"):
        assert counts[op] == 0, (op, counts)
    logits_model = make_model(list(model.graph.node)[:-1], list(model.graph.input), [vi("logits", ["N", 3])],
                              {t.name: _arr(t) for t in model.graph.initializer})
    np.testing.assert_allclose(run(canon.model, {"x": x})["logits"], run(logits_model, {"x": x})["logits"],
                               rtol=1e-4, atol=1e-5)


def _arr(t):
    from onnx import numpy_helper
    return numpy_helper.to_array(t)
