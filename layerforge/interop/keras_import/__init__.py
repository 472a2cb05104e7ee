"""`layerforge import`: Keras 1, 2 and 3 models (architecture and weights) -> a layerforge config and run directory.

    from layerforge.interop.keras_import import import_keras
    result = import_keras("model.h5", "runs/imported")          # or a .json (+ weights=...), or a .keras archive

Sources: a `model.to_json()` file (Keras 1.0-1.2, 2.x, 3.x; also a JSON string holding the JSON), a legacy HDF5
model file (`model_config` attribute + `model_weights` group; Keras 1 and 2, Theano or TensorFlow), or a Keras 3
`.keras` archive (`config.json` + `model.weights.h5`). `weights=` pairs a JSON with what `save_weights` wrote.
Nothing in a file is ever executed: Lambda bytecode is recognised and reported, never unmarshalled.

Modules: `sources` reads the files, `topology` flattens the model graph (nested models inlined), `layer_map` maps
each layer config with the semantics of the version that wrote it, `weights` converts the arrays,
`training_map` the training config, and this module writes config.yaml and the run directory.

Weight order and layout, per version (what `weights` implements; layerforge stores the Keras 3 layout)
--------------------------------------------------------------------------------------------------------
Where the weights are:
- Keras 1 and 2 (`save_weights_to_hdf5_group`): one group per layer of the model, in the `layer_names` attribute;
  each group's `weight_names` attribute lists its datasets in `layer.weights` order. Keras 1's Sequential saves
  `flattened_layers`: the layers of the branches of a first-position Merge get top-level groups of their own. A
  model nested as a layer gets one group whose weights are all its layers' weights, trainable ones first, then the
  non-trainable; their names carry the inner layer's name ("dense_1/kernel:0" in Keras 2, "dense_1_W" in Keras 1),
  which is how they are matched to the inner layers.
- Keras 3 (`model.weights.h5` in the `.keras` zip, or a `.weights.h5`): `layers/<name>/vars/<i>`, where <name> is
  the snake-cased class name with `_1`, `_2`, ... on repeats in the same list (a Functional model's list includes
  its InputLayers, a Sequential's does not); RNN weights sit under `cell/`, TimeDistributed's under `layer/`,
  Bidirectional's under `forward_layer/` and `backward_layer/`, a nested model's under `<name>/layers/...`.

Order and layout within a layer:
- Dense: Keras 1 [W (in, out), b]; Keras 2/3 [kernel, bias]: the same arrays.
- Conv1D: Keras 1 W is (length, 1, in, out) (Keras 1.0: (out, in, length, 1)) -> (length, in, out).
- Conv2D/Conv3D (incl. AtrousConvolution): Keras 1 `dim_ordering: th` W is (out, in, rows, cols[, depth]) ->
  (rows, cols[, depth], in, out); `tf` is already that; Keras 2/3 always (spatial..., in, out).
- Deconvolution2D (Keras 1): W as Convolution2D: tf (rows, cols, in, out), th (out, in, rows, cols) -> Keras 2/3
  Conv2DTranspose (rows, cols, out, in). Its `output_shape` (with the batch axis) is kept: it fixes the size.
- SeparableConvolution2D (Keras 1): th depthwise (mult, in, r, c), pointwise (out, in*mult, 1, 1) -> (r, c, in,
  mult) and (1, 1, in*mult, out).
- Theano backend (Keras 1 and 2): Theano's conv2d convolves (flips the kernel); TensorFlow, Keras 3 and layerforge
  correlate, so every spatial axis of the kernel is flipped, as Keras' `convert_kernel` does (conv, transposed
  conv, depthwise/separable depthwise kernels, ConvLSTM2D kernels). Keras 2 records the backend in the file; Keras 1
  does not: a Keras 1 model using `dim_ordering: th` is taken to be Theano, otherwise TensorFlow (`backend=` / the
  `--backend` option decides instead).
- LSTM: Keras 1 (consume_less cpu/mem) stores 12 arrays per gate in the order i, c, f, o: W_i, U_i, b_i, W_c,
  U_c, b_c, W_f, U_f, b_f, W_o, U_o, b_o (matched by their names' suffixes) -> kernel [W_i|W_f|W_c|W_o],
  recurrent_kernel [U_i|U_f|U_c|U_o], bias [b_i|b_f|b_c|b_o]; consume_less gpu and Keras 2/3 store those three.
- GRU: Keras 1 stores W_z, U_z, b_z, W_r, U_r, b_r, W_h, U_h, b_h -> kernel [z|r|h], recurrent_kernel, bias;
  Keras 2 GRU is `reset_after=False` (bias (3u,)) unless the config says otherwise; Keras 3 defaults to
  `reset_after=True` (bias (2, 3u)).
- SimpleRNN: [W, U, b] = [kernel, recurrent_kernel, bias].
- BatchNormalization: Keras 2/3 [gamma, beta, moving_mean, moving_variance] (gamma absent when scale=False, beta
  when center=False). Keras 1 [gamma, beta, running_mean, running_std]: from 1.0.6 to 1.2.2 `running_std` is
  updated with the batch *variance* that `K.normalize_batch_in_training` returns and used as a variance by
  `K.batch_normalization` (x - mean) / sqrt(var + epsilon): it is the moving variance. Keras 1.0.0-1.0.5 kept a
  real standard deviation sqrt(mean((x - m)^2) + epsilon) and divided by (std + epsilon); those become
  moving_variance = (running_std + epsilon)^2 - epsilon, which gives the same output. A Keras 1 file without a
  version is taken to be from 1.0.0-1.0.5 (the versions that did not record it).
- Bidirectional: the forward layer's weights, then the backward layer's, each converted as its own layer.
- TimeDistributed: the wrapped layer's. Keras 1 TimeDistributedDense: [W, b] of a TimeDistributed(Dense). A
  Sequential model inside a wrapper becomes layerforge's Sequential layer; its weights are split by the inner
  layers' names (Keras 1/2 weight names) or object paths (Keras 3), since Keras lists trainable weights first.
- CuDNNLSTM / CuDNNGRU (Keras 2, GPU only): as Keras 2's `_convert_rnn_weights`, each gate's input kernel is
  stored transposed in Fortran order and each recurrent kernel transposed; the LSTM's input and recurrent biases
  (8u) add up to one (4u), the GRU's 6u bias is the (2, 3u) bias of GRU(reset_after=True); sigmoid gates.
- MultiHeadAttention (Keras 3): query, key, value, output EinsumDense kernels and biases, in that order.
- Rescaling and Normalization (preprocessing) hold constants only: they become a Lambda expression with them.
- Embedding [W]/[embeddings]; PReLU [alphas]/[alpha]; Highway [W, W_carry, b, b_carry]; MaxoutDense [W (k, in,
  out), b (k, out)]; LocallyConnected1D/2D [W/kernel, b/bias]; ParametricSoftplus [alphas, betas]; SReLU [t_left,
  a_left, t_right, a_right]: the same arrays in every version.

Semantics that follow the writing version, not Keras 3 (recorded in the config's header): `hard_sigmoid` in a
Keras 1/2 file is 0.2x + 0.5 (`hard_sigmoid_keras1`), the Keras 1/2 GRU is `reset_after: false`, Keras 1 `th`
models stay channels_first, Keras 1 Deconvolution2D keeps its `output_shape`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ...errors import ConfigError, Problem
from .sources import KerasImportError, fail, read_source

__all__ = ["import_keras", "ImportResult", "KerasImportError", "parse_lambda_options"]


@dataclass
class ImportResult:
    """What `import_keras` wrote."""

    out_dir: Path
    config_path: Path
    source: Path
    source_kind: str  # json, hdf5 or keras
    keras_version: str | None
    backend: str | None
    layers: int
    total_params: int
    with_weights: bool
    notes: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    config: dict = field(default_factory=dict)


def parse_lambda_options(items: list[str] | None) -> dict[str, str]:
    """`--lambda NAME=EXPRESSION` values -> {name: expression}."""
    out: dict[str, str] = {}
    for item in items or []:
        name, sep, expr = item.partition("=")
        if not sep or not name.strip() or not expr.strip():
            fail(f"--lambda {item!r}: expected NAME=EXPRESSION", hint='e.g. --lambda scale="x * 0.5"')
        out[name.strip()] = expr.strip()
    return out


def _backend(value: str | None) -> str | None:
    if value is None:
        return None
    v = str(value).lower()
    return {"tf": "tensorflow", "th": "theano"}.get(v, v)


def import_keras(source, out_dir, *, weights=None, lambdas: dict[str, str] | None = None, force: bool = False,
                 backend: str | None = None) -> ImportResult:
    """Import a Keras model file into `out_dir` (config.yaml; with weights, a complete run directory)."""
    from .convert import run_import

    source, out_dir = Path(source), Path(out_dir)
    if out_dir.exists() and not force:
        if out_dir.is_file() or any(out_dir.iterdir()):
            fail("the output already exists", out_dir, hint="choose another -o, or pass --force to replace it")
    if out_dir.is_file():
        fail("the output is a file, not a directory", out_dir, hint="choose a directory for -o")
    src = read_source(source, weights)
    try:
        return run_import(src, out_dir, lambdas=dict(lambdas or {}), backend=_backend(backend))
    except KerasImportError as exc:
        for p in exc.problems:
            p.file = p.file or str(source)
        raise
    except (KeyError, TypeError, IndexError, AttributeError) as exc:  # a config shaped unlike any Keras wrote
        raise KerasImportError(problems=[Problem(
            message=f"the model config has a structure this importer does not know ({type(exc).__name__}: {exc})",
            file=str(source), hint="is it a Keras 1, 2 or 3 model file?")]) from None
    except ConfigError as exc:
        raise KerasImportError(problems=[Problem(message=f"the imported config does not validate: {p.message}",
                                                 file=str(source), path=p.path, found=p.found, hint=p.hint)
                                         for p in exc.problems] or [Problem(message=str(exc), file=str(source))]
                               ) from None
    finally:
        src.close()
