"""Config loading: YAML positions, Keras 1 names, overrides, errors with locations."""

import textwrap

import pytest

from layerforge.config import load_config
from layerforge.errors import ConfigError
from layerforge.graph import build_graph


def write(tmp_path, text, name="m.yaml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def problems_of(path, overrides=None, graph=True):
    with pytest.raises(ConfigError) as info:
        spec = load_config(path, overrides)
        if graph:
            build_graph(spec)
    return info.value.problems


def test_minimal_config_and_defaults(tmp_path):
    p = write(tmp_path, """
        input_shape: [4]
        layers:
          - {type: Dense, units: 3, activation: softmax}
    """)
    spec = load_config(p)
    g = build_graph(spec)
    assert g.output_shapes == [(3,)]
    assert g.total_params == 15
    assert spec.config.training.optimizer == {"type": "adam"}


def test_keras1_names_equal_modern_names(tmp_path):
    old = write(tmp_path, """
        layers:
          - {type: Dense, output_dim: 8, init: he_normal, W_regularizer: l2, bias: false, input_dim: 5}
    """, "old.yaml")
    new = write(tmp_path, """
        input_shape: [5]
        layers:
          - {type: Dense, units: 8, kernel_initializer: he_normal, kernel_regularizer: {l2: 0.01}, use_bias: false}
    """, "new.yaml")
    a, b = load_config(old), load_config(new)
    a_layer = a.layers[0].model_dump(exclude={"input_shape"})
    b_layer = b.layers[0].model_dump(exclude={"input_shape"})
    assert a_layer == b_layer
    assert build_graph(a).output_shapes == build_graph(b).output_shapes == [(8,)]


def test_unknown_type_suggests_and_locates(tmp_path):
    p = write(tmp_path, """
        input_shape: [28, 28, 1]
        layers:
          - {type: Convolution2d, filters: 3, kernel_size: 3}
    """)
    (prob,) = problems_of(p, graph=False)
    assert prob.line == 4 and prob.path == "layers[0].type"
    assert "Convolution2D" in prob.hint


def test_unknown_parameter_suggests(tmp_path):
    p = write(tmp_path, """
        input_shape: [4]
        layers:
          - type: Dense
            unitz: 3
    """)
    probs = problems_of(p, graph=False)
    unknown = [q for q in probs if "unitz" in q.message][0]
    assert unknown.line == 5 and unknown.path == "layers[0].unitz" and "units" in unknown.hint
    missing = [q for q in probs if "missing" in q.message][0]
    assert missing.path == "layers[0]"


def test_every_error_reported_not_just_first(tmp_path):
    p = write(tmp_path, """
        input_shape: [4]
        layers:
          - {type: Dense, units: -1}
          - {type: Dense, units: 2, activation: rellu}
        training: {epochs: 0, loss: msee}
    """)
    probs = problems_of(p, graph=False)
    paths = {q.path for q in probs}
    assert {"layers[0].units", "layers[1].activation", "training.epochs", "training.loss"} <= paths
    act = [q for q in probs if q.path == "layers[1].activation"][0]
    assert act.line == 5 and "relu" in act.message


def test_recurrent_is_rejected_with_concrete_names(tmp_path):
    p = write(tmp_path, """
        input_shape: [5, 3]
        layers:
          - {type: Recurrent, units: 4}
    """)
    (prob,) = problems_of(p, graph=False)
    for name in ("SimpleRNN", "GRU", "LSTM"):
        assert name in prob.hint


def test_duplicate_keys_empty_not_mapping_non_utf8_directory(tmp_path):
    dup = write(tmp_path, "input_shape: [4]\ninput_shape: [5]\nlayers: []\n", "dup.yaml")
    (prob,) = problems_of(dup, graph=False)
    assert "duplicate key" in prob.message and prob.line == 2
    empty = write(tmp_path, "", "empty.yaml")
    assert "empty" in problems_of(empty, graph=False)[0].message
    lst = write(tmp_path, "- 1\n- 2\n", "list.yaml")
    assert "mapping" in problems_of(lst, graph=False)[0].message
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("name: caf\xe9\n".encode("latin-1"))
    prob = problems_of(bad, graph=False)[0]
    assert "UTF-8" in prob.message and prob.line == 1
    assert "directory" in problems_of(tmp_path, graph=False)[0].message


def test_yaml_syntax_error_has_line(tmp_path):
    p = write(tmp_path, "layers:\n  - {type: Dense, units: 3\n")
    prob = problems_of(p, graph=False)[0]
    assert "YAML" in prob.message and prob.line is not None


def test_overrides_applied_before_validation(tmp_path):
    p = write(tmp_path, """
        input_shape: [4]
        layers:
          - {type: Dense, units: 8}
          - {type: Dense, units: 3}
        training: {epochs: 3}
    """)
    spec = load_config(p, ["training.epochs=5", "layers.1.units=64", "layers[0].activation=relu"])
    assert spec.config.training.epochs == 5
    assert spec.layers[1].units == 64 and spec.layers[0].activation == "relu"
    probs = problems_of(p, ["training.epochs=zero"], graph=False)
    assert probs[0].file == "<command line>" and probs[0].path == "training.epochs"
    with pytest.raises(ConfigError, match="out of range"):
        load_config(p, ["layers.7.units=3"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config(p, ["training.epochs"])


def test_huge_dense_reported_not_allocated(tmp_path):
    p = write(tmp_path, """
        input_shape: [100]
        layers:
          - {type: Dense, units: 1000000000000}
    """)
    (prob,) = problems_of(p)
    assert "nothing was allocated" in prob.message and prob.line == 4


def test_training_section_validated(tmp_path):
    p = write(tmp_path, """
        input_shape: [4]
        layers: [{type: Dense, units: 1}]
        training:
          optimizer: {type: adamm, lr: 0.1}
          metrics: [acuracy]
          batch_size: 0
          validation_split: 1.5
          callbacks: [{type: EarlyStoping}]
    """)
    probs = problems_of(p, graph=False)
    text = " ".join(q.message for q in probs)
    assert "adam" in text and "accuracy" in text and "EarlyStopping" in text
    assert {"training.batch_size", "training.validation_split"} <= {q.path for q in probs}


def test_optimizer_keras1_lr_and_schedule(tmp_path):
    p = write(tmp_path, """
        input_shape: [4]
        layers: [{type: Dense, units: 1}]
        training:
          optimizer:
            type: SGD
            lr: 0.1
            momentum: 0.9
            decay: 0.001
    """)
    opt = load_config(p).config.training.optimizer
    assert opt == {"type": "sgd", "learning_rate": 0.1, "momentum": 0.9, "decay": 0.001}
    p2 = write(tmp_path, """
        input_shape: [4]
        layers: [{type: Dense, units: 1}]
        training:
          optimizer: {type: adam, learning_rate: {type: exponential_decay, initial_learning_rate: 0.1,
                                                  decay_steps: 100, decay_rate: 0.9}}
    """, "s.yaml")
    assert load_config(p2).config.training.optimizer["learning_rate"]["type"] == "exponential_decay"


def test_nested_stack_errors_are_located(tmp_path):
    p = write(tmp_path, """
        input_shape: [5, 3]
        layers:
          - type: TimeDistributed
            layer:
              type: Sequential
              layers:
                - {type: Dense, units: 8, activation: relu}
                - {type: Dense, units: 2, activaton: relu}
    """)
    (prob,) = problems_of(p, graph=False)
    assert prob.path == "layers[0].layer.layers[1].activaton" and prob.line == 9 and "activation" in prob.hint


def test_nested_keras1_names_are_translated_and_located(tmp_path):
    p = write(tmp_path, """
        input_shape: [5, 3]
        layers:
          - type: TimeDistributed
            layer: {type: Dense, output_dim: 0}
    """)
    (prob,) = problems_of(p, graph=False)
    assert prob.path == "layers[0].layer.output_dim" and prob.line == 5 and "greater than 0" in prob.message
    p = write(tmp_path, """
        input_shape: [5, 3]
        layers:
          - type: Bidirectional
            layer: {type: LSTM, output_dim: 2, output_dimm: 3}
    """, "typo.yaml")
    (prob,) = problems_of(p, graph=False)
    assert prob.path == "layers[0].layer.output_dimm" and "did you mean 'output_dim'?" == prob.hint


def test_layer_configs_take_keras1_names_themselves():
    """The Keras 1 translation is each Config's own before-validator, so a Config built in code accepts them too,
    and a nested layer mapping validates through the same union (aliases included)."""
    from layerforge.layers import REGISTRY, ensure_type

    for name in ("Dense", "TimeDistributed", "Conv1D"):
        ensure_type(name)
    assert REGISTRY["Dense"].Config.model_validate({"type": "Dense", "output_dim": 3}).units == 3
    wrapped = REGISTRY["TimeDistributed"].Config.model_validate(
        {"type": "TimeDistributed", "layer": {"type": "Convolution1D", "nb_filter": 2, "filter_length": 3}})
    assert isinstance(wrapped.layer, REGISTRY["Conv1D"].Config)
    assert (wrapped.layer.type, wrapped.layer.filters, wrapped.layer.kernel_size) == ("Conv1D", 2, (3,))


def test_a_config_imports_only_the_layer_families_it_uses():
    import json
    import subprocess
    import sys
    from pathlib import Path

    code = ("import json, sys\nfrom layerforge.config import load_config\nload_config('configs/mnist_cnn.yaml')\n"
            "print(json.dumps([m.rsplit('.', 1)[1] for m in sys.modules if m.startswith('layerforge.layers.')]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parents[1]).stdout
    families = set(json.loads(out))
    assert {"core", "convolution", "pooling"} <= families
    assert not families & {"recurrent", "wrappers", "attention", "merge", "normalization"}
