"""Every fast path (Numba kernels, fused BLAS code) against its plain-numpy reference in layers/reference/.

float64 on tiny shapes: forward outputs, input gradients and weight gradients must agree to rounding (rtol 1e-10).
The configurations are picked to run each code path of a layer: strides, paddings, dilation, groups, fused and
plain activations, direct and GEMM convolutions, masks, go_backwards, return_sequences/return_state, dropout
masks, training and inference.
"""

import numpy as np
import pytest

from layerforge.layers.reference import attention as attn_ref
from layerforge.layers.reference import conv_recurrent as clstm_ref
from layerforge.layers.reference import convolution as conv_ref
from layerforge.layers.reference import core as core_ref
from layerforge.layers.reference import embedding as emb_ref
from layerforge.layers.reference import locally_connected as lc_ref
from layerforge.layers.reference import normalization as norm_ref
from layerforge.layers.reference import pooling as pool_ref
from layerforge.layers.reference import recurrent as rnn_ref
from layerforge.layers.reference import reshaping as reshape_ref
from layerforge.testing import build_layer

RTOL, ATOL = 1e-10, 1e-12


def _as_list(v):
    return v if isinstance(v, list) else [v]


def _close(got, want, what):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=RTOL, atol=ATOL, err_msg=what)


def _fast(built, x, *, training=False, mask=None, seed=3):
    """The layer's own forward and backward (positional params/dy/cache only), with a random output gradient."""
    layer = built.layer
    y, cache = layer.forward(built.params, x, training=training, rng=np.random.default_rng(seed), mask=mask)
    g = np.random.default_rng(seed + 100)
    dy = [g.standard_normal(np.shape(v)) for v in _as_list(y)]
    dy = dy if isinstance(y, list) else dy[0]
    dx, grads = layer.backward(built.params, dy, cache)
    return y, dy, dx, grads


def _compare(built, x, y, dy, dx, grads, ref_forward, ref_backward, **kw):
    config, params = built.layer.config, built.params
    want_y = ref_forward(params, x, config, **kw)
    for i, (a, b) in enumerate(zip(_as_list(y), _as_list(want_y), strict=True)):
        _close(a, b, f"{config.type} forward output {i}")
    want_dx, want_grads = ref_backward(params, x, dy, config, **kw)
    if want_dx is not None:
        for i, (a, b) in enumerate(zip(_as_list(dx), _as_list(want_dx), strict=True)):
            _close(a, b, f"{config.type} gradient of input {i}")
    assert set(grads) == set(want_grads) == set(params)
    for k in params:
        _close(grads[k], want_grads[k], f"{config.type} gradient of {k}")


def _input(shape, batch=2, seed=0):
    return np.random.default_rng(seed).standard_normal((batch, *shape))


def _randomise(built, seed=5):
    """Weights drawn at random (biases and gammas included, so every term of the formulas counts)."""
    g = np.random.default_rng(seed)
    for k, v in built.params.items():
        built.params[k] = g.standard_normal(v.shape) * 0.5
    return built


# ------------------------------------------------------------------------------------------------ Dense

@pytest.mark.parametrize("config,shape", [
    ({"units": 4}, (5,)),
    ({"units": 3, "activation": "tanh"}, (3, 5)),  # fused epilogue, 3D input
    ({"units": 3, "activation": "relu"}, (4,)),
    ({"units": 3, "activation": "sigmoid", "use_bias": False}, (4,)),
    ({"units": 3, "activation": "softmax"}, (6,)),
    ({"units": 2, "activation": "elu"}, (2, 3)),  # not fused: the plain activation path
    ({"units": 2, "activation": "swish"}, (3,)),
], ids=lambda v: str(v) if isinstance(v, dict) else None)
def test_dense(config, shape):
    built = _randomise(build_layer({"type": "Dense", **config}, shape))
    x = _input(shape)
    _compare(built, x, *_fast(built, x), core_ref.dense_forward, core_ref.dense_backward)


# ------------------------------------------------------------------------------------------------ convolutions

_CONV = [
    ("Conv1D", {"filters": 3, "kernel_size": 3}, (7, 2)),
    ("Conv1D", {"filters": 4, "kernel_size": 2, "dilation_rate": 2, "padding": "causal", "activation": "tanh"},
     (7, 3)),
    ("Conv1D", {"filters": 6, "kernel_size": 4, "strides": 2, "padding": "same", "groups": 2}, (9, 4)),
    ("Conv1D", {"filters": 3, "kernel_size": 3, "data_format": "channels_first", "use_bias": False,
                "activation": "sigmoid"}, (2, 8)),
    ("Conv1D", {"filters": 2, "kernel_size": 5, "padding": "same", "activation": "relu"}, (6, 6)),  # GEMM, relu
    ("Conv2D", {"filters": 4, "kernel_size": 3, "strides": 2, "padding": "same"}, (7, 7, 3)),  # GEMM
    ("Conv2D", {"filters": 4, "kernel_size": 3, "strides": 2, "activation": "relu"}, (7, 6, 3)),  # GEMM, relu
    ("Conv2D", {"filters": 3, "kernel_size": 2, "padding": "same", "activation": "relu"}, (4, 5, 2)),  # direct
    ("Conv2D", {"filters": 3, "kernel_size": [2, 4], "padding": "same", "dilation_rate": 2, "activation": "tanh"},
     (5, 6, 2)),
    ("Conv2D", {"filters": 3, "kernel_size": 3, "dilation_rate": 2, "padding": "same", "activation": "tanh"},
     (6, 5, 3)),  # GEMM, activation not fused
    ("Conv2D", {"filters": 2, "kernel_size": 3, "activation": "elu", "use_bias": False}, (4, 4, 1)),  # direct
    ("Conv2D", {"filters": 4, "kernel_size": 3, "strides": [2, 1], "groups": 2, "data_format": "channels_first",
                "use_bias": False}, (4, 5, 6)),
    ("Conv3D", {"filters": 2, "kernel_size": [2, 3, 2], "strides": 2, "padding": "same", "activation": "tanh"},
     (3, 5, 4, 2)),
    ("Conv3D", {"filters": 3, "kernel_size": 2, "padding": "same", "activation": "relu"}, (3, 3, 2, 4)),  # GEMM
    ("Conv3D", {"filters": 2, "kernel_size": 2, "dilation_rate": [1, 2, 1], "groups": 2,
                "data_format": "channels_first"}, (2, 3, 4, 3)),
    ("Conv1DTranspose", {"filters": 3, "kernel_size": 3, "strides": 2}, (4, 2)),
    ("Conv1DTranspose", {"filters": 2, "kernel_size": 4, "strides": 3, "padding": "same", "output_padding": 1,
                         "activation": "tanh"}, (3, 2)),
    ("Conv2DTranspose", {"filters": 2, "kernel_size": 3, "strides": 2, "padding": "same", "output_padding": [1, 0],
                         "activation": "tanh"}, (3, 4, 2)),
    ("Conv2DTranspose", {"filters": 2, "kernel_size": [2, 3], "dilation_rate": 2, "data_format": "channels_first"},
     (3, 3, 2)),
    ("Conv2DTranspose", {"filters": 2, "kernel_size": 4, "strides": 2, "padding": "same", "activation": "relu"},
     (3, 3, 2)),
    ("Conv2DTranspose", {"filters": 2, "kernel_size": 2, "strides": 3}, (2, 3, 2)),  # stride > kernel: gaps
    ("Deconv2D", {"filters": 2, "kernel_size": 4, "strides": 2, "padding": "same", "output_shape": [None, 5, 6, 2]},
     (3, 3, 2)),
    ("Conv3DTranspose", {"filters": 2, "kernel_size": 2, "strides": 2}, (2, 3, 2, 2)),
    ("Conv3DTranspose", {"filters": 1, "kernel_size": [3, 2, 2], "strides": [2, 1, 1], "padding": "same",
                         "data_format": "channels_first", "activation": "tanh"}, (2, 2, 3, 2)),
    ("DepthwiseConv1D", {"kernel_size": 3, "depth_multiplier": 2, "padding": "same", "strides": 2}, (7, 3)),
    ("DepthwiseConv1D", {"kernel_size": 2, "dilation_rate": 2, "activation": "tanh",
                         "data_format": "channels_first"}, (2, 6)),
    ("DepthwiseConv2D", {"kernel_size": 3, "depth_multiplier": 2, "padding": "same", "strides": 2,
                         "activation": "tanh"}, (5, 4, 2)),
    ("DepthwiseConv2D", {"kernel_size": [2, 3], "dilation_rate": [2, 1], "data_format": "channels_first",
                         "use_bias": False, "activation": "relu"}, (3, 5, 4)),
    ("SeparableConv1D", {"filters": 3, "kernel_size": 3, "depth_multiplier": 2, "padding": "same"}, (7, 2)),
    ("SeparableConv1D", {"filters": 2, "kernel_size": 2, "strides": 2, "data_format": "channels_first",
                         "activation": "tanh"}, (3, 7)),
    ("SeparableConv2D", {"filters": 3, "kernel_size": [3, 2], "depth_multiplier": 2, "strides": 2,
                         "padding": "same", "activation": "relu"}, (5, 6, 2)),
    ("SeparableConv2D", {"filters": 2, "kernel_size": 2, "dilation_rate": 2, "data_format": "channels_first",
                         "use_bias": False}, (3, 5, 4)),
]


def _conv_ref(type_name):
    if "Transpose" in type_name or type_name.startswith("Deconv"):
        return conv_ref.conv_transpose_forward, conv_ref.conv_transpose_backward
    if type_name.startswith(("Depthwise", "Separable")):
        return conv_ref.depthwise_forward, conv_ref.depthwise_backward
    return conv_ref.conv_forward, conv_ref.conv_backward


@pytest.mark.parametrize("type_name,config,shape", _CONV,
                         ids=[f"{t}-{i}" for i, (t, _, _) in enumerate(_CONV)])
@pytest.mark.parametrize("training", [True, False], ids=["train", "infer"])
def test_convolution(type_name, config, shape, training):
    built = _randomise(build_layer({"type": type_name, **config}, shape))
    x = _input(shape)
    _compare(built, x, *_fast(built, x, training=training), *_conv_ref(type_name))


# ------------------------------------------------------------------------------------------------ pooling

_POOL = [
    ("MaxPooling1D", {"pool_size": 3, "strides": 2, "padding": "same"}, (7, 3)),
    ("MaxPooling1D", {"pool_size": 2, "strides": 1}, (5, 2)),
    ("MaxPooling1D", {"pool_size": 2, "data_format": "channels_first"}, (3, 7)),
    ("MaxPooling2D", {"pool_size": 2, "padding": "same"}, (5, 5, 2)),
    ("MaxPooling2D", {"pool_size": [3, 2], "strides": [2, 1], "data_format": "channels_first"}, (2, 7, 6)),
    ("MaxPooling3D", {"pool_size": 3, "strides": 2, "padding": "same"}, (5, 4, 5, 1)),
    ("MaxPooling3D", {"pool_size": [2, 1, 3], "data_format": "channels_first"}, (2, 4, 3, 6)),
    ("AveragePooling1D", {"pool_size": 2, "padding": "same"}, (5, 3)),
    ("AveragePooling1D", {"pool_size": 4, "strides": 3, "padding": "same", "data_format": "channels_first"},
     (2, 8)),
    ("AveragePooling2D", {"pool_size": 3, "strides": 2, "padding": "same"}, (6, 5, 2)),
    ("AveragePooling2D", {"pool_size": [2, 3], "strides": [1, 2], "data_format": "channels_first"}, (2, 4, 7)),
    ("AveragePooling3D", {"pool_size": 2, "strides": 1, "padding": "same"}, (3, 4, 3, 2)),
    ("AveragePooling3D", {"pool_size": [3, 2, 2], "strides": [2, 2, 1]}, (5, 4, 3, 2)),
]


@pytest.mark.parametrize("type_name,config,shape", _POOL, ids=[f"{t}-{i}" for i, (t, _, _) in enumerate(_POOL)])
def test_pooling(type_name, config, shape):
    built = build_layer({"type": type_name, **config}, shape)
    x = _input(shape)
    average = type_name.startswith("Average")
    _compare(built, x, *_fast(built, x), pool_ref.pool_forward, pool_ref.pool_backward, average=average)


def test_max_pooling_ties_go_to_the_first_maximum():
    built = build_layer({"type": "MaxPooling2D", "pool_size": 2, "strides": 1}, (3, 3, 1))
    x = np.round(_input((3, 3, 1)))  # many equal values in a window
    _compare(built, x, *_fast(built, x), pool_ref.pool_forward, pool_ref.pool_backward, average=False)


_GLOBAL = [
    ("GlobalMaxPooling1D", {}, (5, 3), False),
    ("GlobalMaxPooling1D", {"data_format": "channels_first", "keepdims": True}, (3, 6), False),
    ("GlobalAveragePooling1D", {}, (6, 3), True),
    ("GlobalAveragePooling1D", {"keepdims": True, "data_format": "channels_first"}, (3, 5), False),
    ("GlobalMaxPooling2D", {"data_format": "channels_first", "keepdims": True}, (2, 3, 5), False),
    ("GlobalAveragePooling2D", {}, (3, 4, 2), False),
    ("GlobalMaxPooling3D", {}, (3, 4, 2, 3), False),
    ("GlobalAveragePooling3D", {"data_format": "channels_first", "keepdims": True}, (2, 3, 2, 4), False),
]


@pytest.mark.parametrize("type_name,config,shape,masked", _GLOBAL,
                         ids=[f"{t}-{i}" for i, (t, *_) in enumerate(_GLOBAL)])
def test_global_pooling(type_name, config, shape, masked):
    built = build_layer({"type": type_name, **config}, shape)
    x = _input(shape)
    mask = (np.random.default_rng(1).random((2, shape[0])) > 0.4) if masked else None
    if mask is not None:
        mask[:, 0] = True
    _compare(built, x, *_fast(built, x, mask=mask), pool_ref.global_pool_forward, pool_ref.global_pool_backward,
             average="Average" in type_name, mask=mask)


# ------------------------------------------------------------------------------------------------ recurrent

_RNN = [
    ("SimpleRNN", {"units": 3}, False),
    ("SimpleRNN", {"units": 3, "return_sequences": True}, True),
    ("SimpleRNN", {"units": 3, "go_backwards": True, "return_state": True, "activation": "relu6"}, False),
    ("SimpleRNN", {"units": 3, "return_sequences": True, "go_backwards": True, "use_bias": False}, True),
    ("SimpleRNN", {"units": 3, "dropout": 0.3, "recurrent_dropout": 0.4}, True),
    ("LSTM", {"units": 3}, False),
    ("LSTM", {"units": 3, "return_sequences": True}, True),
    ("LSTM", {"units": 3, "go_backwards": True, "return_state": True}, True),
    ("LSTM", {"units": 3, "return_sequences": True, "go_backwards": True,
              "recurrent_activation": "hard_sigmoid_keras1", "activation": "softsign"}, False),
    ("LSTM", {"units": 2, "dropout": 0.25, "recurrent_dropout": 0.5, "return_sequences": True,
              "return_state": True, "use_bias": False}, True),
    ("GRU", {"units": 3}, False),
    ("GRU", {"units": 3, "return_sequences": True}, True),
    ("GRU", {"units": 3, "return_state": True, "go_backwards": True, "recurrent_activation": "hard_sigmoid",
             "use_bias": False}, True),
    ("GRU", {"units": 3, "dropout": 0.2, "recurrent_dropout": 0.3, "return_sequences": True}, False),
    ("GRU", {"units": 3, "reset_after": False}, False),
    ("GRU", {"units": 3, "reset_after": False, "return_sequences": True, "go_backwards": True}, True),
    ("GRU", {"units": 3, "reset_after": False, "return_state": True, "dropout": 0.2, "recurrent_dropout": 0.3,
             "activation": "relu"}, True),
]


def _dropout_masks(config, batch, features, training, seed):
    """The masks the layer draws (same rng, same order: input then recurrent), or None."""
    rng = np.random.default_rng(seed)
    masks = []
    for rate, n in ((config.dropout, features), (config.recurrent_dropout, config.units)):
        masks.append((rng.random((batch, n)) >= rate) / (1.0 - rate) if training and rate > 0 else None)
    return masks


@pytest.mark.parametrize("type_name,config,masked", _RNN, ids=[f"{t}-{i}" for i, (t, *_) in enumerate(_RNN)])
@pytest.mark.parametrize("training", [True, False], ids=["train", "infer"])
def test_recurrent(type_name, config, masked, training, monkeypatch):
    from layerforge.layers import recurrent

    monkeypatch.setattr(recurrent, "FORCE_BLOCKS", 2)  # two blocks of samples (threads): the split and the sum
    shape, batch = (4, 2), 5
    built = _randomise(build_layer({"type": type_name, **config}, shape))
    x = _input(shape, batch)
    mask = None
    if masked:
        mask = np.random.default_rng(2).random((batch, shape[0])) > 0.35
        mask[0] = [False, True, True, False]  # a masked first step: its output is zeros
    dmask, rmask = _dropout_masks(built.layer.config, batch, shape[1], training, seed=3)
    _compare(built, x, *_fast(built, x, training=training, mask=mask, seed=3), rnn_ref.rnn_forward,
             rnn_ref.rnn_backward, mask=mask, dropout_mask=dmask, recurrent_dropout_mask=rmask)


@pytest.mark.parametrize("type_name", ["SimpleRNN", "LSTM", "GRU"])
def test_stateful_recurrent_starts_from_the_carried_state(type_name):
    built = _randomise(build_layer({"type": type_name, "units": 3, "stateful": True, "return_sequences": True},
                                   (3, 2), batch_size=2))
    g = np.random.default_rng(9)
    for name in built.layer.state_names:
        built.layer.state[name] = g.standard_normal((2, 3))
    states = [built.layer.state[n].copy() for n in built.layer.state_names]
    x = _input((3, 2))
    # a masked first step outputs zeros (no previous output yet) while the state it keeps is the carried one
    mask = np.array([[False, True, True], [True, False, True]])
    _compare(built, x, *_fast(built, x, training=True, mask=mask), rnn_ref.rnn_forward, rnn_ref.rnn_backward,
             initial_states=states, mask=mask)


@pytest.mark.parametrize("type_name", ["SimpleRNN", "LSTM", "GRU"])
@pytest.mark.parametrize("return_sequences", [True, False])
def test_recurrent_zero_output_for_mask(type_name, return_sequences):
    # Bidirectional builds its inner layers so: masked steps output zeros instead of repeating the previous output
    built = _randomise(build_layer({"type": type_name, "units": 3, "return_sequences": return_sequences}, (4, 2)))
    layer = type(built.layer)(built.layer.config, built.layer.name, zero_output_for_mask=True)
    layer.build(built.input_shape)
    built.layer = layer
    x = _input((4, 2), 3)
    mask = np.array([[True, False, True, False], [False, True, True, True], [True, True, False, True]])
    _compare(built, x, *_fast(built, x, training=True, mask=mask), rnn_ref.rnn_forward, rnn_ref.rnn_backward,
             mask=mask, zero_output_for_mask=True)


# ------------------------------------------------------------------------------------------------ normalization

_BN = [
    ({}, (5,), False),
    ({}, (3, 3, 2), False),
    ({"axis": 1, "momentum": 0.9}, (3, 2, 3), False),
    ({"center": False, "scale": False}, (3, 4), False),
    ({"axis": -2, "center": False}, (3, 4), False),
    ({}, (5, 3), True),
    ({"axis": [1, 3]}, (2, 3, 2), False),
    ({"trainable": False}, (4,), False),
]


@pytest.mark.parametrize("config,shape,masked", _BN, ids=[str(i) for i in range(len(_BN))])
@pytest.mark.parametrize("training", [True, False], ids=["train", "infer"])
def test_batch_normalization(config, shape, masked, training):
    built = _randomise(build_layer({"type": "BatchNormalization", **config}, shape))
    g = np.random.default_rng(4)
    state = built.layer.state
    state["moving_mean"] = g.standard_normal(state["moving_mean"].shape)
    state["moving_variance"] = g.uniform(0.5, 2.0, state["moving_variance"].shape)
    before = {k: v.copy() for k, v in state.items()}
    x = _input(shape, 4) * 2 + 1
    mask = None
    if masked:
        mask = g.random((4, shape[0])) > 0.3
        mask[:, 0] = True
    fast = _fast(built, x, training=training, mask=mask)
    after = {k: v.copy() for k, v in state.items()}
    batch_stats = training and built.layer.config.trainable

    def forward(params, x, config, **kw):
        return norm_ref.batch_norm_forward(params, x, config, **kw)[0]

    _compare(built, x, *fast, forward, norm_ref.batch_norm_backward, moving_mean=before["moving_mean"],
             moving_variance=before["moving_variance"], training=batch_stats, mask=mask)
    _, mean, var = norm_ref.batch_norm_forward(built.params, x, built.layer.config, moving_mean=before["moving_mean"],
                                               moving_variance=before["moving_variance"], training=batch_stats,
                                               mask=mask)
    _close(after["moving_mean"], mean, "moving_mean update")
    _close(after["moving_variance"], var, "moving_variance update")


@pytest.mark.parametrize("config,shape", [
    ({}, (3, 5)),
    ({"axis": [1, 2]}, (3, 2, 2)),
    ({"axis": 1, "epsilon": 1e-5}, (4, 3)),
    ({"rms_scaling": True}, (6,)),
    ({"center": False, "scale": False}, (7,)),
    ({"center": False}, (2, 4)),
], ids=lambda v: str(v) if isinstance(v, dict) else None)
def test_layer_normalization(config, shape):
    built = _randomise(build_layer({"type": "LayerNormalization", **config}, shape))
    x = _input(shape, 3) * 2 + 0.5
    _compare(built, x, *_fast(built, x), norm_ref.layer_norm_forward, norm_ref.layer_norm_backward)


@pytest.mark.parametrize("config,shape", [
    ({"groups": 2}, (3, 4)),
    ({"groups": 3, "axis": 1}, (6, 2, 2)),
    ({"groups": 1, "center": False}, (2, 2, 3)),
    ({"groups": 4, "scale": False}, (2, 3, 4)),  # groups = channels: instance normalisation
], ids=lambda v: str(v) if isinstance(v, dict) else None)
def test_group_normalization(config, shape):
    built = _randomise(build_layer({"type": "GroupNormalization", **config}, shape))
    x = _input(shape, 3) * 2 + 0.5
    _compare(built, x, *_fast(built, x), norm_ref.group_norm_forward, norm_ref.group_norm_backward)


# ------------------------------------------------------------------------------------------------ embedding

@pytest.mark.parametrize("config,shape,training", [
    ({"input_dim": 7, "output_dim": 3}, (5,), True),
    ({"input_dim": 5, "output_dim": 2}, (2, 3), False),
    ({"input_dim": 4, "output_dim": 2, "mask_zero": True}, (6,), True),  # repeated indices add up
    ({"input_dim": 6, "output_dim": 2, "dropout": 0.4}, (4,), True),  # whole rows dropped
])
def test_embedding(config, shape, training):
    built = _randomise(build_layer({"type": "Embedding", **config}, shape))
    x = np.random.default_rng(0).integers(0, config["input_dim"], size=(3, *shape))
    scale = None
    rate = config.get("dropout", 0)
    if training and rate:  # the layer's draw: one keep flag per vocabulary row
        scale = (np.random.default_rng(3).random(config["input_dim"]) >= rate) / (1.0 - rate)
    _compare(built, x, *_fast(built, x, training=training), emb_ref.embedding_forward, emb_ref.embedding_backward,
             row_scale=scale)


# ------------------------------------------------------------------------------------------------ locally connected

@pytest.mark.parametrize("type_name,config,shape", [
    ("LocallyConnected1D", {"filters": 3, "kernel_size": 2, "strides": 3, "activation": "tanh"}, (8, 2)),
    ("LocallyConnected1D", {"filters": 2, "kernel_size": 3, "use_bias": False}, (5, 3)),
    ("LocallyConnected2D", {"filters": 2, "kernel_size": [2, 3], "strides": [2, 1]}, (5, 4, 2)),
    ("LocallyConnected2D", {"filters": 3, "kernel_size": 2, "strides": [1, 2], "data_format": "channels_first",
                            "activation": "relu"}, (2, 4, 5)),
    ("LocallyConnected2D", {"filters": 2, "kernel_size": 2, "use_bias": False, "data_format": "channels_first"},
     (1, 3, 3)),
], ids=lambda v: None)
def test_locally_connected(type_name, config, shape):
    built = _randomise(build_layer({"type": type_name, **config}, shape))
    x = _input(shape)
    _compare(built, x, *_fast(built, x), lc_ref.locally_connected_forward, lc_ref.locally_connected_backward)


# ------------------------------------------------------------------------------------------------ ConvLSTM2D

_CONV_LSTM = [
    ({"filters": 2, "kernel_size": 3}, (3, 5, 5, 2), False),
    ({"filters": 2, "kernel_size": [2, 3], "padding": "same", "return_sequences": True}, (3, 3, 4, 2), True),
    ({"filters": 2, "kernel_size": 2, "strides": [2, 1], "data_format": "channels_first",
      "recurrent_activation": "hard_sigmoid_keras1", "go_backwards": True}, (3, 1, 4, 3), False),
    ({"filters": 2, "kernel_size": 2, "dilation_rate": 2, "dropout": 0.3, "recurrent_dropout": 0.3,
      "return_state": True}, (2, 4, 4, 1), False),
    ({"filters": 2, "kernel_size": 2, "padding": "same", "use_bias": False, "activation": "relu",
      "return_sequences": True, "return_state": True, "go_backwards": True}, (3, 3, 3, 1), True),
]


@pytest.mark.parametrize("config,shape,masked", _CONV_LSTM, ids=[str(i) for i in range(len(_CONV_LSTM))])
@pytest.mark.parametrize("training", [True, False], ids=["train", "infer"])
def test_conv_lstm(config, shape, masked, training):
    built = _randomise(build_layer({"type": "ConvLSTM2D", **config}, shape))
    c = built.layer.config
    batch = 3
    x = _input(shape, batch)
    mask = None
    if masked:
        mask = np.array([[True, False, True], [False, True, True], [True, True, False]])[:, :shape[0]]
    dmask = rmask = None
    rng = np.random.default_rng(3)  # the layer's draws: input mask, then recurrent mask
    frame = built.output_shape[-3:] if not c.return_state else built.output_shape[1]
    frame = frame[1:] + frame[:1] if c.data_format == "channels_first" else frame
    in_frame = shape[2:] + shape[1:2] if c.data_format == "channels_first" else shape[1:]
    if training and c.dropout > 0:
        dmask = (rng.random((batch, *in_frame)) >= c.dropout) / (1.0 - c.dropout)
    if training and c.recurrent_dropout > 0:
        rmask = (rng.random((batch, *frame)) >= c.recurrent_dropout) / (1.0 - c.recurrent_dropout)
    _compare(built, x, *_fast(built, x, training=training, mask=mask, seed=3), clstm_ref.conv_lstm_forward,
             clstm_ref.conv_lstm_backward, mask=mask, dropout_mask=dmask, recurrent_dropout_mask=rmask)


# ------------------------------------------------------------------------------------------------ UpSampling2D

@pytest.mark.parametrize("config,shape", [
    ({"size": [2, 3]}, (3, 2, 2)),
    ({"data_format": "channels_first"}, (2, 3, 1)),
    ({"size": [3, 1]}, (1, 4, 2)),  # a single row: every output row reads it
], ids=lambda v: str(v) if isinstance(v, dict) else None)
def test_bilinear_upsampling(config, shape):
    built = build_layer({"type": "UpSampling2D", "interpolation": "bilinear", **config}, shape)
    x = _input(shape)
    _compare(built, x, *_fast(built, x), reshape_ref.bilinear_upsampling_forward,
             reshape_ref.bilinear_upsampling_backward)


# ------------------------------------------------------------------------------------------------ MultiHeadAttention

@pytest.mark.parametrize("config,shapes,masked", [
    ({"num_heads": 2, "key_dim": 3}, [(4, 5)], False),  # self-attention, one input
    ({"num_heads": 2, "key_dim": 2, "value_dim": 3, "output_shape": 4}, [(3, 5), (4, 6)], True),
    ({"num_heads": 2, "key_dim": 2}, [(4, 3), (4, 3), (4, 2)], True),  # query, value, key with masks
    ({"num_heads": 1, "key_dim": 2, "use_causal_mask": True, "return_attention_scores": True, "use_bias": False},
     [(3, 4), (3, 4)], False),
    ({"num_heads": 3, "key_dim": 2, "use_causal_mask": True}, [(4, 3)], True),
], ids=lambda v: str(v) if isinstance(v, dict) else None)
def test_multi_head_attention(config, shapes, masked):
    built = _randomise(build_layer({"type": "MultiHeadAttention", **config}, shapes))
    x = [_input(s, 3, seed=i) for i, s in enumerate(shapes)]
    mask = None
    if masked:
        g = np.random.default_rng(6)
        mask = [g.random((3, s[0])) > 0.3 for s in shapes]
        for m in mask:
            m[:, 0] = True
        mask[0][1] = False  # a query with no position to attend from: its output is the bias alone
    _compare(built, x, *_fast(built, x, mask=mask), attn_ref.mha_forward, attn_ref.mha_backward, mask=mask)


@pytest.mark.parametrize("type_name,config,shapes,masked", [
    ("Attention", {}, [(4, 3), (5, 3)], False),
    ("Attention", {"use_scale": True, "return_attention_scores": True}, [(4, 3), (4, 2), (4, 3)], True),
    ("Attention", {"score_mode": "concat", "use_scale": True, "use_causal_mask": True}, [(3, 2), (3, 2)], False),
    ("Attention", {"score_mode": "concat"}, [(3, 2), (4, 2)], True),
    ("AdditiveAttention", {}, [(4, 3), (5, 3)], True),
    ("AdditiveAttention", {"use_scale": False, "return_attention_scores": True}, [(4, 3), (4, 2), (4, 3)], True),
    ("AdditiveAttention", {"use_causal_mask": True}, [(3, 2), (3, 2)], False),
], ids=lambda v: str(v) if isinstance(v, (dict, str)) else None)
def test_score_attention(type_name, config, shapes, masked):
    built = _randomise(build_layer({"type": type_name, **config}, shapes))
    x = [_input(s, 3, seed=i) for i, s in enumerate(shapes)]
    mask = None
    if masked:
        g = np.random.default_rng(6)
        mask = [g.random((3, s[0])) > 0.3 for s in shapes]
        for m in mask:
            m[:, 0] = True
    _compare(built, x, *_fast(built, x, mask=mask), attn_ref.score_attention_forward,
             attn_ref.score_attention_backward, mask=mask)


def test_stateful_conv_lstm_starts_from_the_carried_state():
    built = _randomise(build_layer({"type": "ConvLSTM2D", "filters": 2, "kernel_size": 2, "stateful": True,
                                    "padding": "same", "return_state": True}, (2, 3, 3, 1), batch_size=2))
    g = np.random.default_rng(9)
    for name in ("h", "c"):
        built.layer.state[name] = g.standard_normal((2, 3, 3, 2))
    states = [built.layer.state[n].copy() for n in ("h", "c")]
    x = _input((2, 3, 3, 1))
    _compare(built, x, *_fast(built, x, training=True), clstm_ref.conv_lstm_forward, clstm_ref.conv_lstm_backward,
             initial_states=states)
