"""Property-based robustness suite (issue 17): generated configs, YAML texts, overrides, data files and damaged
run directories, each checked against the promise

    exit code 0, 1 or 2; never a traceback or `internal error`; bounded time (a Hypothesis deadline per example)
    and bounded memory (a subprocess under an address-space limit for the YAML families that used to explode).

Everything runs in-process through Typer's CliRunner except the memory checks. The default profile is
derandomized (the same examples on every CI run) and takes about a minute; set LAYERFORGE_FUZZ=N to run N times
as many random examples locally.
"""

from __future__ import annotations

import io
import math
import os
import shutil
import subprocess
import sys
import warnings
import zipfile
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import yaml

hypothesis = pytest.importorskip("hypothesis", reason="the property-based suite needs hypothesis (test extra)")
from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from layerforge.cli import app  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
IRIS_CSV = ROOT / "examples" / "data" / "iris.csv"
IRIS_YAML = (ROOT / "configs" / "iris.yaml").read_text()
ENV = {"COLUMNS": "250", "NO_COLOR": "1"}
runner = CliRunner()

_SCALE = int(os.environ.get("LAYERFORGE_FUZZ", "0") or 0)


def fuzz(examples: int, deadline_s: float | None = 10.0):
    """Settings: ``examples`` per test in CI (derandomized), times LAYERFORGE_FUZZ (random) when set."""
    return settings(max_examples=examples * max(_SCALE, 1), derandomize=not _SCALE,
                    deadline=timedelta(seconds=deadline_s) if deadline_s else None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                           HealthCheck.data_too_large, HealthCheck.filter_too_much])


def keeps_the_promise(result, *, codes=(0, 1, 2)) -> None:
    out = result.output
    assert result.exit_code in codes, (result.exit_code, out[-2000:])
    assert "Traceback" not in out and "internal error" not in out, out[-2000:]
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)


def cli(*args):
    return runner.invoke(app, [str(a) for a in args], env=ENV)


# ---------------------------------------------------------------------------------------------- strategies

NASTY_FLOATS = st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0, 1e-320, 1e39, -1e39, 1e308])
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 64), st.integers(-10**30, 10**30), NASTY_FLOATS,
    st.floats(-10, 10, allow_nan=False), st.text(max_size=8),
    st.sampled_from(["relu", "softmax", "same", "valid", "glorot_uniform", "adam", "", "x" * 300, "d:7", "-1"]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) |
                      st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)


def _layer_types():
    from layerforge.layers import REGISTRY, load_all

    load_all()
    return {name: sorted(cls.Config.model_fields) for name, cls in REGISTRY.items()}


LAYER_FIELDS = _layer_types()
PLAUSIBLE = {"units": st.integers(1, 6), "filters": st.integers(1, 4), "kernel_size": st.integers(1, 3),
             "pool_size": st.integers(1, 3), "rate": st.floats(0, 0.9), "activation": st.sampled_from(
                 ["relu", "tanh", "sigmoid", "softmax", "linear"]), "strides": st.integers(1, 2),
             "padding": st.sampled_from(["same", "valid"]), "target_shape": st.lists(st.integers(-1, 6), max_size=3),
             "size": st.integers(1, 3), "input_dim": st.integers(1, 10), "output_dim": st.integers(1, 4)}


@st.composite
def layer_dicts(draw, depth: int = 0):
    kind = draw(st.sampled_from(sorted(LAYER_FIELDS)))
    fields = [f for f in LAYER_FIELDS[kind] if f != "type"]
    layer = {"type": kind}
    for key in draw(st.lists(st.sampled_from(fields or ["name"]), max_size=4, unique=True)):
        if key in ("layer", "backward_layer") and depth < 1:
            layer[key] = draw(layer_dicts(depth + 1))
        else:
            layer[key] = draw(PLAUSIBLE[key] if key in PLAUSIBLE and draw(st.booleans()) else VALUES)
    if draw(st.integers(0, 9)) == 0:
        layer[draw(st.text(min_size=1, max_size=6))] = draw(SCALARS)  # an unknown parameter
    return layer


OPTIMIZER_ARGS = ["learning_rate", "momentum", "nesterov", "rho", "beta_1", "beta_2", "epsilon", "clipnorm",
                  "clipvalue", "global_clipnorm", "decay", "weight_decay", "amsgrad", "centered", "lr"]
SCHEDULE = st.fixed_dictionaries(
    {"type": st.sampled_from(["exponential_decay", "inverse_time_decay", "piecewise_constant", "polynomial_decay",
                              "cosine_decay", "nope"])},
    optional={"initial_learning_rate": st.one_of(st.floats(1e-4, 1), SCALARS),
              "decay_steps": st.one_of(st.integers(1, 100), SCALARS), "decay_rate": st.one_of(st.floats(0.1, 1),
                                                                                             SCALARS),
              "boundaries": st.lists(st.integers(-5, 100), max_size=3),
              "values": st.lists(st.one_of(st.floats(1e-4, 1), SCALARS), max_size=4),
              "power": SCALARS, "alpha": SCALARS, "warmup_steps": SCALARS, "staircase": SCALARS})


@st.composite
def optimizers(draw):
    opt = {"type": draw(st.sampled_from(["sgd", "adam", "rmsprop", "adagrad", "adadelta", "adamw", "adamax",
                                         "nadam", "Adam", "sdg"]))}
    for key in draw(st.lists(st.sampled_from(OPTIMIZER_ARGS), max_size=3, unique=True)):
        plausible = st.floats(0.0, 0.99) if key != "learning_rate" else st.one_of(st.floats(1e-4, 0.5), SCHEDULE)
        opt[key] = draw(st.one_of(plausible, SCALARS))
    return opt if draw(st.integers(0, 5)) else draw(SCALARS)


CALLBACK_ARGS = ["monitor", "patience", "min_delta", "mode", "baseline", "restore_best_weights", "start_from_epoch",
                 "factor", "cooldown", "min_lr", "filepath", "save_best_only", "save_weights_only", "period",
                 "filename", "append", "separator", "schedule", "verbose", "bogus"]


@st.composite
def callbacks(draw):
    name = draw(st.sampled_from(["EarlyStopping", "ReduceLROnPlateau", "ModelCheckpoint", "CSVLogger",
                                 "LearningRateScheduler", "TerminateOnNaN", "earlystopping", "Nope"]))
    if draw(st.integers(0, 4)) == 0:
        return name
    cb = {"type": name}
    for key in draw(st.lists(st.sampled_from(CALLBACK_ARGS), max_size=3, unique=True)):
        cb[key] = draw(st.one_of(SCALARS, st.sampled_from(["loss", "val_loss", "min", "ckpt-{epoch}", "lr * 0.5"]),
                                 st.integers(-2, 5)))
    return cb


@st.composite
def configs(draw):
    cfg = {"name": draw(st.sampled_from(["m", "", "a b", "x" * 50])), "seed": draw(st.one_of(st.integers(0, 9),
                                                                                              SCALARS))}
    if draw(st.integers(0, 5)):
        cfg["input_shape"] = draw(st.lists(st.one_of(st.integers(-2, 12), st.none(), SCALARS), min_size=1,
                                           max_size=4))
    cfg["layers"] = draw(st.lists(layer_dicts(), min_size=0, max_size=4))
    training = {"optimizer": draw(optimizers()), "epochs": draw(st.one_of(st.just(1), SCALARS)),
                "loss": draw(st.sampled_from(["mse", "sparse_categorical_crossentropy", "huber", "bogus"]) | VALUES)}
    if draw(st.integers(0, 3)) == 0:
        training["callbacks"] = draw(st.one_of(VALUES, st.lists(callbacks(), max_size=2)))
    for key in draw(st.lists(st.sampled_from(["batch_size", "validation_split", "metrics",
                                              "class_weight", "loss_weights", "shuffle"]), max_size=2, unique=True)):
        training[key] = draw(VALUES)
    cfg["training"] = training
    if draw(st.integers(0, 4)) == 0:
        cfg["outputs"] = draw(st.lists(st.sampled_from(["dense", "d:7", "input", "x:0", ""]), max_size=2))
    return cfg


def dump(cfg) -> str:
    return yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True)


# ---------------------------------------------------------------------------------------------- configs

@fuzz(200)
@given(cfg=configs())
def test_generated_configs_validate_and_summarize(tmp_path_factory, cfg):
    path = tmp_path_factory.mktemp("cfg") / "m.yaml"
    path.write_text(dump(cfg))
    keeps_the_promise(cli("validate", path), codes=(0, 2))
    keeps_the_promise(cli("summary", path, "--batch-size", "3"), codes=(0, 2))


MUTATION_PIECES = st.sampled_from(["&a ", "*a", "!ate ", "!!int ", "<<: ", "[", "]", "{", "}", ": ", "- ", "\x00",
                                   "\x07", "\t", "\n", "'", '"', "#", "|", ">", "? ", "%YAML 1.1\n", "---\n", "...",
                                   ".nan", "-1", "1e39", "~", "\ufeff", "\u2028", "é"])


@st.composite
def mutated_texts(draw):
    text = IRIS_YAML
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        op = draw(st.sampled_from(["insert", "delete", "duplicate"]))
        if op == "insert":
            text = text[:at] + draw(st.one_of(MUTATION_PIECES, st.text(max_size=4))) + text[at:]
        elif op == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 30)):]
        else:
            line = text[:at].rsplit("\n", 1)[-1] + "\n"
            text = text[:at] + line + text[at:]
    return text


@fuzz(300)
@given(text=mutated_texts())
def test_mutated_yaml_texts(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("yaml") / "m.yaml"
    path.write_text(text.replace("../examples/data/iris.csv", str(IRIS_CSV)), encoding="utf-8", errors="replace")
    keeps_the_promise(cli("validate", path), codes=(0, 2))


OVERRIDE_KEYS = st.sampled_from(["training.epochs", "training.optimizer", "training.optimizer.learning_rate",
                                 "layers.0.units", "layers[1].rate", "layers.9.units", "layers.-1.activation",
                                 "input_shape", "input_shape.0", "name", "outputs",
                                 "data.train.path", "a.b.c", "layers.x", "layers..units", "", "training.loss",
                                 "training.callbacks", "training.callbacks.0.patience"])
OVERRIDE_VALUES = st.one_of(st.sampled_from(["5", "-1", ".nan", "[1, 2", "&x [*x]", "!!int abc", "!ate 3",
                                             "{type: sgd, momentum: fast}", "[]", "null", "1e400", "\x00",
                                             "[EarlyStopping]", "{type: CSVLogger, filename: null}", "true"]),
                            st.text(max_size=10))


@fuzz(200)
@given(pairs=st.lists(st.tuples(OVERRIDE_KEYS, OVERRIDE_VALUES), min_size=1, max_size=3),
       raw=st.lists(st.text(max_size=12), max_size=1))
def test_generated_overrides(tmp_path_factory, pairs, raw):
    path = tmp_path_factory.mktemp("ov") / "iris.yaml"
    path.write_text(IRIS_YAML.replace("../examples/data/iris.csv", str(IRIS_CSV)))
    overrides = [f"{k}={v}" for k, v in pairs] + raw
    assume(all(not o.startswith("-") for o in overrides))  # would be read as an option
    keeps_the_promise(cli("validate", path, *overrides), codes=(0, 2))


# ---------------------------------------------------------------------------------------------- data files

DATA_MODEL_YAML = """\
name: d
input_shape: [4]
layers:
  - {type: Dense, units: 3, activation: softmax, name: species}
training: {loss: sparse_categorical_crossentropy, epochs: 1, batch_size: 8}
"""


def _npy(arr) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _filled(shape, dtype, fill):
    with np.errstate(all="ignore"):
        return np.full(shape, fill).astype(dtype, casting="unsafe")


ARRAYS = st.builds(
    _filled,
    st.lists(st.integers(0, 5), min_size=0, max_size=3).map(tuple),
    st.sampled_from(["float32", "float64", "int64", "int8", "bool", "<U3", "complex64", "uint16"]),
    st.sampled_from([0, 1, 2.5, -1, 1e39, float("nan"), float("inf")]))


@st.composite
def data_files(draw):
    kind = draw(st.sampled_from(["npy", "npz", "csv"]))
    if kind == "npy":
        raw = _npy(draw(ARRAYS))
    elif kind == "npz":
        names = draw(st.lists(st.sampled_from(["x", "y", "features", "a b", "sample_weight"]), min_size=1,
                              max_size=3, unique=True))
        raw = _npz(**{n: draw(ARRAYS) for n in names})
        if draw(st.integers(0, 4)) == 0:  # a member that is not an array
            buf = io.BytesIO(raw)
            with zipfile.ZipFile(buf, "a") as z, warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a duplicate member name is part of the test
                z.writestr(draw(st.sampled_from(["x.npy", "y.npy", "z.txt"])), draw(st.binary(max_size=40)))
            raw = buf.getvalue()
    else:
        cell = st.one_of(st.sampled_from(["1", "2.5", "", "nan", "inf", "1e39", "-1e400", "setosa", '"a,b"', "0x1F",
                                          "1_000", "\x00", " ", "１"]), st.text(max_size=4))
        rows = draw(st.lists(st.lists(cell, min_size=1, max_size=6), min_size=0, max_size=6))
        header = draw(st.sampled_from(["a,b,c,d,species\n", "", "species\n", "a;b;c;d;species\n"]))
        raw = (header + "\n".join(draw(st.sampled_from([",", ";", "\t"])).join(r) for r in rows)).encode(
            "utf-8", "replace")
    cut = draw(st.one_of(st.none(), st.integers(0, max(len(raw) - 1, 0))))
    if cut is not None and draw(st.booleans()):
        raw = raw[:cut]  # truncated
    elif cut is not None and raw:
        b = bytearray(raw)
        b[cut] ^= draw(st.integers(1, 255))  # one damaged byte (a bad CRC, a broken header ...)
        raw = bytes(b)
    return kind, raw


@pytest.fixture(scope="module")
def data_model():
    from layerforge.api import Model
    from layerforge.config import load_config

    return Model(load_config(yaml.safe_load(DATA_MODEL_YAML)))


@fuzz(400)
@given(case=data_files(), require_target=st.booleans())
def test_generated_data_files(tmp_path_factory, data_model, case, require_target):
    from layerforge.errors import DataError

    kind, raw = case
    path = tmp_path_factory.mktemp("data") / f"f.{kind}"
    path.write_bytes(raw)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # numpy warnings must not reach the user
        try:
            ds = data_model.load_data(path, require_target=require_target)  # train/evaluate, or predict
        except DataError as exc:
            assert path.name in exc.render_plain()
            return
    assert ds.n >= 0


# ---------------------------------------------------------------------------------------------- training

@st.composite
def trainable_configs(draw):
    hidden = draw(st.lists(st.fixed_dictionaries(
        {"type": st.sampled_from(["Dense", "Dropout", "GaussianNoise", "BatchNormalization", "Activation",
                                  "LeakyReLU"])}), max_size=2))
    for layer in hidden:
        if layer["type"] == "Dense":
            layer["units"] = draw(st.integers(1, 5))
        elif layer["type"] == "Dropout":
            layer["rate"] = draw(st.floats(0, 0.9) | SCALARS)
        elif layer["type"] == "GaussianNoise":
            layer["stddev"] = draw(st.floats(0, 1) | SCALARS)
        elif layer["type"] == "Activation":
            layer["activation"] = draw(st.sampled_from(["relu", "tanh", "softplus", "elu", "nope"]))
    training = {"loss": "sparse_categorical_crossentropy", "epochs": 1,
                "batch_size": draw(st.sampled_from([1, 7, 500, 10**12])), "optimizer": draw(optimizers())}
    if draw(st.booleans()):
        training["validation_split"] = draw(st.sampled_from([0.0, 0.5, 0.99, 1.0, -0.1]))
    if draw(st.booleans()):
        training["metrics"] = draw(st.lists(st.sampled_from(["accuracy", "auc", "f1_score", "precision", "mse"]),
                                            max_size=2))
    if draw(st.integers(0, 3)) == 0:
        training["loss_weights"] = draw(st.sampled_from([[1], [1, 2], {"species": 2}, {"nope": 1}, [-1], [.5]]))
    if draw(st.integers(0, 3)) == 0:
        training["class_weight"] = draw(st.sampled_from(["balanced", {"setosa": 2}, {"0": 1}, {"x": -1}]))
    if draw(st.integers(0, 2)) == 0:
        training["callbacks"] = draw(st.lists(callbacks(), max_size=2))
    return {"name": "t", "seed": 0, "input_shape": [4],
            "layers": hidden + [{"type": "Dense", "units": 3, "activation": "softmax", "name": "species"}],
            "training": training, "data": {"train": {"path": str(IRIS_CSV), "target": "species"}}}


DATA_DEPENDENT = ("needs about", "which the data does not have", "training and", "samples of",
                  # a callback watching val_*: whether there is validation data is known once train has its
                  # arguments (--validation-data), not from the config alone
                  "val_* values need validation data")


@fuzz(40, deadline_s=None)  # the first examples compile kernels
@given(cfg=trainable_configs())
def test_generated_configs_that_validate_also_train(tmp_path_factory, cfg):
    tmp = tmp_path_factory.mktemp("train")
    path = tmp / "m.yaml"
    path.write_text(dump(cfg))
    checked = cli("validate", path)
    keeps_the_promise(checked, codes=(0, 2))
    trained = cli("train", path, "-o", tmp / "run", "-q")
    keeps_the_promise(trained)
    if checked.exit_code == 0:  # validate means it trains: no user error left for train to find, except what
        # depends on the data or the machine, which validate does not read (classes, sample counts, free memory)
        assert trained.exit_code in (0, 1) or any(m in trained.output for m in DATA_DEPENDENT), trained.output[-2000:]
    else:
        assert trained.exit_code == 2


# ---------------------------------------------------------------------------------------------- run directories

@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run")
    cfg = tmp / "m.yaml"
    cfg.write_text(DATA_MODEL_YAML)
    result = cli("train", cfg, "--data", IRIS_CSV, "-o", tmp / "run", "-q")
    assert result.exit_code == 0, result.output
    return tmp / "run"


RUN_FILES = ["config.yaml", "state.json", "schema.json", "history.json", "weights.safetensors",
             "optimizer.safetensors"]


@st.composite
def damages(draw):
    name = draw(st.sampled_from(RUN_FILES))
    how = draw(st.sampled_from(["replace", "truncate", "flip", "delete", "dir", "json"]))
    if how == "replace":
        return name, how, draw(st.binary(max_size=30) | st.sampled_from([b"", b"null", b"[1]", b"5", b"NaN", b"{}"]))
    if how == "json":
        value = draw(VALUES)
        return name, how, yaml.safe_dump(value).encode() if name.endswith("yaml") else \
            __import__("json").dumps(value).encode()
    return name, how, draw(st.integers(0, 10_000))


@fuzz(120)
@given(damage=st.lists(damages(), min_size=1, max_size=2))
def test_damaged_run_directories(tmp_path_factory, trained_run, damage):
    run_dir = tmp_path_factory.mktemp("dmg") / "run"
    shutil.copytree(trained_run, run_dir)
    for name, how, arg in damage:
        target = run_dir / name
        if target.is_dir() or not target.exists():  # already made a folder, or deleted, by an earlier damage
            continue
        if how in ("replace", "json"):
            target.write_bytes(arg)
        elif how == "truncate":
            target.write_bytes(target.read_bytes()[: arg % max(target.stat().st_size, 1)])
        elif how == "flip":
            b = bytearray(target.read_bytes())
            if b:
                b[arg % len(b)] ^= 0x5A
            target.write_bytes(bytes(b))
        elif how == "delete":
            target.unlink()
        else:
            target.unlink()
            target.mkdir()
    keeps_the_promise(cli("predict", run_dir, "--data", IRIS_CSV), codes=(0, 2))


# ---------------------------------------------------------------------------------------------- memory bound

MEMORY_LIMIT = 3 * 2**30  # address space for a `validate` subprocess: a real config needs a fraction of it


def exploding_yaml() -> dict[str, str]:
    """The YAML families that exhausted memory or the stack before issue 17, at sizes past every limit."""
    def bomb(n):
        lines = [f"a0: &a0 [{', '.join(['x'] * n)}]"]
        lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * n)}]" for i in range(1, n)]
        return "\n".join(lines) + f"\nlayers: *a{n - 1}\n"

    def merge_bomb(n):
        lines = ["m0: &m0 {k: 1}"]
        lines += [f"m{i}: &m{i} {{<<: [{', '.join([f'*m{i - 1}'] * n)}], k{i}: [*m{i - 1}, *m{i - 1}]}}"
                  for i in range(1, n)]
        return "\n".join(lines) + f"\nlayers: [*m{n - 1}]\n"

    cases = {f"bomb{n}": bomb(n) for n in (5, 9, 12)}
    cases.update({f"merge{n}": merge_bomb(n) for n in (6, 12)})
    cases.update({f"deep{d}": "layers: " + "[" * d + "]" * d + "\n" for d in (1001, 100_000)})
    cases["deepmap"] = "".join("  " * i + f"k{i}:\n" for i in range(3000))
    cases["wide"] = "layers: [" + ", ".join(["{type: Dense, units: 1}"] * 200_000) + "]\ninput_shape: [1]\n"
    return cases


_CHILD = """
import json, sys
from typer.testing import CliRunner
from layerforge.cli import app
codes = {}
for path in sys.argv[1:]:
    r = CliRunner().invoke(app, ["validate", path], env={"COLUMNS": "250", "NO_COLOR": "1"})
    bad = r.exception is not None and not isinstance(r.exception, SystemExit)
    codes[path] = [r.exit_code, bad or "internal error" in r.output or "Traceback" in r.output]
print(json.dumps(codes))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS is a Linux limit")
def test_exploding_yaml_stays_within_memory(tmp_path):
    """One subprocess under an address-space limit validates every family; none may need the memory."""
    import json

    paths = []
    for name, text in exploding_yaml().items():
        paths.append(tmp_path / f"{name}.yaml")
        paths[-1].write_text(text)

    def limit():  # pragma: no cover - runs in the child
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))

    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", _CHILD, *map(str, paths)], capture_output=True, text=True,
                          timeout=300, preexec_fn=limit, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    codes = json.loads(proc.stdout.strip().splitlines()[-1])
    for path, (code, broken) in codes.items():
        assert code in (0, 2) and not broken, (path, code)
    assert codes[str(tmp_path / "bomb9.yaml")][0] == 2 and codes[str(tmp_path / "deep100000.yaml")][0] == 2
