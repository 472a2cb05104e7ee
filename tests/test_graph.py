"""Graph building: names, references, cycles, unused inputs, multi-input shapes."""

import textwrap

import pytest

from layerforge.config import load_config
from layerforge.errors import ConfigError
from layerforge.graph import build_graph


def graph_of(tmp_path, text):
    p = tmp_path / "g.yaml"
    p.write_text(textwrap.dedent(text))
    return build_graph(load_config(p))


def problems(tmp_path, text):
    with pytest.raises(ConfigError) as info:
        graph_of(tmp_path, text)
    return info.value.problems


def test_default_names_follow_keras(tmp_path):
    g = graph_of(tmp_path, """
        input_shape: [4]
        layers:
          - {type: Dense, units: 3}
          - {type: Dense, units: 3}
          - {type: Activation, activation: relu}
    """)
    assert [n.name for n in g.nodes] == ["dense", "dense_1", "activation"]


def test_topological_order_independent_of_listing(tmp_path):
    g = graph_of(tmp_path, """
        inputs: [{name: a, shape: [4]}]
        layers:
          - {type: Dense, units: 2, name: out, inputs: [hidden]}
          - {type: Dense, units: 3, name: hidden, inputs: [a]}
        outputs: [out]
    """)
    assert [n.name for n in g.nodes] == ["hidden", "out"]


def test_cycle_unknown_duplicate_unused(tmp_path):
    probs = problems(tmp_path, """
        inputs: [{name: a, shape: [4]}, {name: unused, shape: [2]}]
        layers:
          - {type: Dense, units: 4, name: x, inputs: [y]}
          - {type: Dense, units: 4, name: y, inputs: [x]}
          - {type: Dense, units: 4, name: z, inputs: [a]}
          - {type: Dense, units: 4, name: z, inputs: [hiden]}
        outputs: [z]
    """)
    text = [p.message for p in probs]
    assert any("cycle" in t for t in text)
    assert any("duplicate name 'z'" in t for t in text)
    assert any("unknown layer or input 'hiden'" in t for t in text)
    assert any("'unused' is not used" in t for t in text)


def test_shape_error_names_layer_shapes_and_fix(tmp_path):
    probs = problems(tmp_path, """
        input_shape: [10]
        layers:
          - {type: Dense, units: 4}
          - {type: LSTM, units: 3}
    """)
    (p,) = probs
    assert p.path == "layers[1]" and p.line == 5
    assert "LSTM" in p.message and "(None, 4)" in p.message
    assert p.hint


def test_two_input_merge_shapes(tmp_path):
    g = graph_of(tmp_path, """
        inputs: [{name: left, shape: [16]}, {name: right, shape: [16]}]
        layers:
          - {type: Dense, units: 32, name: l, inputs: left}
          - {type: Dense, units: 32, name: r, inputs: right}
          - {type: Concatenate, inputs: [l, r], name: cat}
          - {type: Add, inputs: [l, r], name: sum}
          - {type: Dot, axes: 1, inputs: [l, r], name: dot}
        outputs: [cat, sum, dot]
    """)
    assert g.output_shapes == [(64,), (32,), (1,)]
    assert g.total_params == 1088
    bad = problems(tmp_path, """
        inputs: [{name: left, shape: [16]}, {name: right, shape: [8]}]
        layers:
          - {type: Add, inputs: [left, right]}
    """)
    assert "(None, 16)" in bad[0].message and "(None, 8)" in bad[0].message


def test_variable_time_dimension(tmp_path):
    g = graph_of(tmp_path, """
        input_shape: [null, 8]
        layers:
          - {type: LSTM, units: 16, return_sequences: true}
          - {type: TimeDistributed, layer: {type: Dense, units: 4}}
    """)
    assert g.output_shapes == [(None, 4)]
    assert g.total_params == 1668


def test_multi_output_references(tmp_path):
    g = graph_of(tmp_path, """
        input_shape: [5, 3]
        layers:
          - {type: LSTM, units: 4, return_state: true, name: enc}
          - {type: Dense, units: 2, inputs: ["enc:2"], name: from_c}
        outputs: [from_c, "enc:1"]
    """)
    assert g.output_shapes == [(2,), (4,)]
