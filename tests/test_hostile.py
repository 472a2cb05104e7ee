"""Hostile and broken input (issue 17): one regression test per class of failure the fuzzing found.

The promise: a clear message (file:line:column where there is one) and exit code 2 for bad input, 1 for a
failed run, never a traceback or `internal error`, never a hang or a memory blow-up.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from layerforge.cli import app

ROOT = Path(__file__).resolve().parent.parent
IRIS_CSV = ROOT / "examples" / "data" / "iris.csv"
ENV = {"COLUMNS": "250", "NO_COLOR": "1"}
runner = CliRunner()

BASE = """\
name: t
seed: 1
input_shape: [4]
layers:
  - {type: Dense, units: 3, activation: softmax, name: out}
training:
  loss: sparse_categorical_crossentropy
  epochs: 1
  batch_size: 16
"""


def run(*args) -> object:
    result = runner.invoke(app, [str(a) for a in args], env=ENV)
    assert "Traceback" not in result.output and "internal error" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


def write(tmp_path, text: str, name: str = "m.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def refused(result, *needles: str) -> str:
    assert result.exit_code == 2, result.output
    for n in needles:
        assert n in result.output, (n, result.output)
    return result.output


# ---------------------------------------------------------------------------------------------- 1. YAML

@pytest.mark.parametrize("text, needles", [
    ("layers: &x [*x]\n", ["m.yaml:1:9", "recursive alias"]),
    ("a: " + "[" * 500 + "]" * 500 + "\n", ["m.yaml:1:", "nested more than"]),
    ("".join("  " * i + f"k{i}:\n" for i in range(500)) + "  " * 500 + "v\n", ["nested more than"]),
    ("a0: &a0 [x,x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 10) + "]\n" for i in range(1, 9)) + "layers: *a8\n",
     ["m.yaml:", "expands to more than"]),
    (BASE.replace("epochs: 1", "epochs: !ate 0.3"), ["m.yaml:8:11", "unknown YAML tag '!ate'"]),
    (BASE.replace("epochs: 1", "epochs: !!int abc"), ["m.yaml:8:11", "cannot read 'abc' as an integer"]),
    (BASE.replace("epochs: 1", "epochs: !!python/object:os.system ls"), ["m.yaml:8:11", "unknown YAML tag"]),
    ("x:\n  <<: [1, 2]\n", ["m.yaml:2:8", "merge key"]),
    ("name: t\x00\ninput_shape: [4]\n", ["m.yaml:1:8", "control character U+0000"]),
    ("name: t\x1b[31m\n", ["m.yaml:1:8", "U+001B"]),
    ("a: *nope\n", ["m.yaml:1:4", "not valid YAML"]),
    ("", ["empty"]),
])
def test_yaml_tricks_are_refused_with_a_location(tmp_path, text, needles):
    refused(run("validate", write(tmp_path, text)), *needles)


def test_merge_keys_follow_yaml_rules(tmp_path):
    text = BASE.replace("layers:\n", "defaults: &d {units: 3, activation: relu}\nlayers:\n").replace(
        "{type: Dense, units: 3, activation: softmax, name: out}", "{<<: *d, type: Dense, activation: softmax}")
    # `defaults` is not a config key; the merge itself must work (own keys win, no duplicate-key error)
    out = refused(run("validate", write(tmp_path, text)), "unknown parameter 'defaults'")
    assert "duplicate" not in out


@pytest.mark.parametrize("special", ["/dev/zero", "fifo", "dir", "big", "loop", "binary"])
def test_config_that_is_not_a_small_text_file(tmp_path, special):
    if special == "/dev/zero":
        path = Path("/dev/zero")
        if not path.exists():
            pytest.skip("no /dev/zero here")
        needle = "device"
    elif special == "fifo":
        if not hasattr(os, "mkfifo"):
            pytest.skip("no FIFOs on this platform")
        path = tmp_path / "pipe.yaml"
        os.mkfifo(path)
        needle = "FIFO"
    elif special == "dir":
        path = tmp_path
        needle = "directory"
    elif special == "big":
        path = tmp_path / "big.yaml"
        with open(path, "wb") as fh:
            fh.truncate(64 * 1024 * 1024)  # sparse: costs no disk
        needle = "at most"
    elif special == "loop":
        path = tmp_path / "a.yaml"
        os.symlink(tmp_path / "b.yaml", path)
        os.symlink(path, tmp_path / "b.yaml")
        needle = "symbolic link loop"
    else:
        path = tmp_path / "b.yaml"
        path.write_bytes(b"name: \xff\xfe\n")
        needle = "not UTF-8"
    refused(run("validate", path), needle)


def test_override_values_get_the_same_checks(tmp_path):
    cfg = write(tmp_path, BASE)
    out = refused(run("validate", cfg, "training.epochs=!!int abc", "name=&x [*x]", "layers.0.units=!foo 3"),
                  "cannot read 'abc'", "recursive alias", "unknown YAML tag '!foo'")
    assert "3 errors" in out
    refused(run("validate", cfg, "a" + ".a" * 200 + "=1"), "more than")


# ---------------------------------------------------------------------------------------------- 2. shapes

@pytest.mark.parametrize("shape, needle", [
    ("[-1, 8]", "dimension -1"), ("[0]", "dimension 0"), ("[28, 28, -1000000000000]", "-1,000,000,000,000"),
    ("[100000, 100000, 100000]", "1,000,000,000,000,000 values per sample"),
])
def test_bad_input_shapes(tmp_path, shape, needle):
    refused(run("validate", write(tmp_path, BASE.replace("[4]", shape))), "m.yaml:3:14", needle)
    refused(run("summary", write(tmp_path, BASE.replace("[4]", shape))), needle)


def test_layer_output_too_large_is_refused_with_the_number(tmp_path):
    text = BASE.replace("input_shape: [4]", "input_shape: [50000, 40000]").replace("units: 3", "units: 100000")
    refused(run("validate", write(tmp_path, text)), "5,000,000,000 values per sample", "nothing was allocated")


def test_bad_shape_on_a_named_input(tmp_path):
    text = BASE.replace("input_shape: [4]", "inputs: [{name: a, shape: [4, -2]}]").replace(
        "name: out}", "name: out, inputs: [a]}")
    refused(run("validate", write(tmp_path, text)), "shape")


# ---------------------------------------------------------------------------------------------- 3. validate = trains

@pytest.mark.parametrize("optimizer, line_col, needle", [
    ("{type: sgd, momentum: fast}", "10:36", "momentum must be a number"),
    ("{type: sgd, clipnorm: .nan}", "10:36", "NaN"),
    ("{type: sgd, learning_rate: .nan}", "10:41", "NaN"),
    ("{type: adam, beta_2: 1.0}", "10:35", "beta_2 must be a number >= 0 and < 1"),
    ("{type: sgd, nesterov: maybe}", "10:36", "nesterov must be true or false"),
    ("{type: sgd, learning_rate: {type: exponential_decay, initial_learning_rate: 0.1, decay_steps: 0, "
     "decay_rate: 0.9}}", "10:108", "decay_steps must be a number > 0"),
    ("{type: sgd, learning_rate: {type: piecewise_constant, boundaries: [10, 20], values: [0.1]}}", "10:",
     "one more value than boundaries"),
    ("{type: sgd, learning_rate: {type: piecewise_constant, boundaries: [10, 5], values: [1, 2, 3]}}", "10:",
     "boundaries must increase"),
    ("{type: sgd, lr: -1}", "10:30", "lr must be a number > 0"),
])
def test_training_settings_checked_at_validate_time(tmp_path, optimizer, line_col, needle):
    cfg = write(tmp_path, BASE + f"  optimizer: {optimizer}\n")
    refused(run("validate", cfg), f"m.yaml:{line_col}", needle)


@pytest.mark.parametrize("extra, needle", [
    ("  loss: {type: huber, delta: -1}\n", "delta must be a number > 0"),
    ("  metrics: [{type: top_k, k: 0}]\n", "k must be an integer >= 1"),
    ("  metrics: [{type: precision, threshold: 2}]\n", "threshold must be a number"),
    ("  validation_split: .nan\n", "NaN"),
])
def test_loss_and_metric_arguments_typed(tmp_path, extra, needle):
    text = BASE.replace("  loss: sparse_categorical_crossentropy\n", "") if "loss:" in extra else BASE
    refused(run("validate", write(tmp_path, text + extra)), needle)


def test_negative_seeds_are_refused(tmp_path):
    text = BASE.replace("seed: 1", "seed: -1").replace("layers:\n", "layers:\n  - {type: GaussianNoise, stddev: 0.1, "
                                                                     "seed: -3}\n")
    refused(run("validate", write(tmp_path, text)), "m.yaml:2:7", "m.yaml:5:", "a seed is a non-negative integer")


@pytest.mark.parametrize("extra, needle", [
    ("  loss_weights: [1, 2, 3]\n", "m.yaml:10:17: training.loss_weights: error: training.loss_weights has 3 entries"),
    ("  loss_weights: {nope: 1}\n", "m.yaml:10:18: training.loss_weights.nope: error"),
    ("  metrics: {nope: [accuracy]}\n", "names output 'nope'"),
])
def test_per_output_settings_fit_the_outputs_at_validate_time(tmp_path, extra, needle):
    refused(run("validate", write(tmp_path, BASE + extra)), needle)


def test_a_schedule_that_overflows_is_a_failed_run_not_a_crash(tmp_path):
    cfg = write(tmp_path, BASE + "  optimizer: {type: sgd, learning_rate: {type: exponential_decay, "
                "initial_learning_rate: 1.0e-300, decay_steps: 1.0e-300, decay_rate: 1.0e300}}\n")
    assert run("validate", cfg).exit_code == 0
    result = run("train", cfg, "--data", IRIS_CSV, "-o", tmp_path / "r", "-q")
    assert result.exit_code == 1 and "NaN or infinite" in result.output


def test_nan_anywhere_in_a_layer_is_refused(tmp_path):
    text = BASE.replace("layers:\n", "layers:\n  - {type: GaussianNoise, stddev: .nan}\n")
    refused(run("validate", write(tmp_path, text)), "m.yaml:5:", "NaN is not a valid value")


@pytest.mark.parametrize("spec, needle", [
    ("kernel_initializer: {type: random_uniform, minval: 1, maxval: -1}", "minval (1) must not exceed maxval"),
    ("kernel_initializer: {type: variance_scaling, scale: -1}", "scale must be a finite number > 0"),
    ("kernel_initializer: {type: random_normal, stddev: -1}", "stddev must be a finite number >= 0"),
    ("kernel_initializer: {type: variance_scaling, mode: sideways}", "mode must be one of"),
    ("kernel_constraint: {type: max_norm, max_value: 1, axis: 7}", "uses axis 7, but the weight has 2 axes"),
    ("kernel_constraint: {type: min_max_norm, min_value: 2, max_value: 1}", "min_value (2) must not exceed"),
    ("input_shape: [true]", "not True"),
    ("kernel_initializer: {type: glorot_uniform, seed: -1}", "seed must be a non-negative integer"),
])
def test_initializer_constraint_and_dimension_arguments(tmp_path, spec, needle):
    text = BASE.replace("input_shape: [4]\n", "" if spec.startswith("input_shape") else "input_shape: [4]\n")
    text = text.replace("name: out}", f"name: out, {spec}}}")
    refused(run("validate", write(tmp_path, text)), "m.yaml:", needle)


# ---------------------------------------------------------------------------------------------- 4. memory

def test_huge_legal_model_refused_before_allocating(tmp_path):
    cfg = write(tmp_path, BASE.replace("units: 3", "units: 300000000"))
    assert run("validate", cfg).exit_code == 0  # legal
    out = refused(run("train", cfg, "--data", IRIS_CSV, "-o", tmp_path / "r", "-q", "--max-memory", "1G"),
                  "needs about", "optimizer state", "activations", "--max-memory limit is 1.0 GB")
    assert "--max-memory" in out
    assert not (tmp_path / "r").exists()


def test_memory_estimate_and_sizes():
    from layerforge.config import load_config
    from layerforge.graph import build_graph
    from layerforge.memory_budget import free_memory, parse_size, training_memory

    assert parse_size("8G") == 8 * 2**30 and parse_size("512MB") == 512 * 2**20 and parse_size("100") == 100
    with pytest.raises(ValueError):
        parse_size("lots")
    spec = load_config({"input_shape": [4], "layers": [{"type": "Dense", "units": 3}],
                        "training": {"optimizer": "adam", "batch_size": 10}})
    est = training_memory(build_graph(spec))
    assert est["weights"] == 15 * 4 and est["gradients"] == 15 * 4 and est["optimizer_state"] == 2 * 15 * 4
    assert est["activations"] == (4 + 3) * 10 * 4 * 2
    assert free_memory() is None or free_memory() > 0


def test_max_memory_option_checked(tmp_path):
    result = runner.invoke(app, ["train", str(write(tmp_path, BASE)), "--max-memory", "lots"], env=ENV)
    assert result.exit_code == 2 and "not a size" in result.output


# ---------------------------------------------------------------------------------------------- 5. data files

def _npy_bytes(arr) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def _huge_header_npy() -> bytes:
    """A 2 KB .npy file whose header claims (10**10, 8) float32 values."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (10**10, 8)})
    return buf.getvalue() + b"\x00" * 1900


def _data_cases(tmp_path) -> dict[str, tuple[Path, str]]:
    x = np.ones((6, 4), np.float32)
    y = np.array([0, 1, 2, 0, 1, 2])
    cases = {}
    p = tmp_path / "huge.npy"
    p.write_bytes(_huge_header_npy())
    cases["huge header"] = (p, "only")
    p = tmp_path / "trunc.npy"
    p.write_bytes(_npy_bytes(x)[:-7])
    cases["truncated npy"] = (p, "truncated")
    p = tmp_path / "notarray.npz"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("x.npy", b"hello, not an array")
        z.writestr("y.npy", _npy_bytes(y))
    cases["npz member not an array"] = (p, "not a NumPy array")
    buf = io.BytesIO()
    np.savez(buf, x=x, y=y)
    good = bytearray(buf.getvalue())
    at = good.find(b"\x00\x00\x80\x3f")
    good[at + 2] ^= 0xFF
    p = tmp_path / "crc.npz"
    p.write_bytes(bytes(good))
    cases["bad crc"] = (p, "damaged")
    p = tmp_path / "trunc.npz"
    p.write_bytes(buf.getvalue()[:300])
    cases["truncated npz"] = (p, "not a readable .npz")
    return cases


def test_huge_header_fixture_claims_a_huge_shape():
    assert b"10000000000" in _huge_header_npy() and len(_huge_header_npy()) < 2048


@pytest.mark.parametrize("case", ["huge header", "truncated npy", "npz member not an array", "bad crc",
                                  "truncated npz"])
def test_broken_data_files_name_the_file(tmp_path, case):
    from layerforge.api import Model
    from layerforge.errors import DataError

    path, needle = _data_cases(tmp_path)[case]
    model = Model.from_yaml(write(tmp_path, BASE))
    with pytest.raises(DataError) as info:
        model.load_data(path)
    text = info.value.render_plain()
    assert path.name in text and needle in text, text


def test_csv_overflow_is_reported_by_cell_not_as_a_warning(tmp_path):
    from layerforge.api import Model
    from layerforge.errors import DataError

    model = Model.from_yaml(write(tmp_path, BASE))
    regression = Model.from_yaml(write(tmp_path, BASE.replace("loss: sparse_categorical_crossentropy", "loss: mse")
                                       .replace("units: 3, activation: softmax", "units: 1"), "r.yaml"))
    (tmp_path / "r.csv").write_text("a,b,c,d,out\n1,2,3,4,-1e39\n1,2,3,4,1\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DataError, match="row 2, column 'out': '-1e39' is too large for float32"):
            regression.load_data(tmp_path / "r.csv")
    for name, text, needle in [("f.csv", "a,b,c,d,species\n1,2,3,1e39,0\n1,2,3,4,1\n", "row 2, column 'd'"),
                               ("l.csv", "a,b,c,d,out\n1,2,3,4,1e39\n1,2,3,4,1\n", "row 2, column 'out'")]:
        (tmp_path / name).write_text(text)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a RuntimeWarning would fail here
            with pytest.raises(DataError) as info:
                model.load_data(tmp_path / name)
        assert needle in info.value.render_plain() and "too large" in info.value.render_plain()


@pytest.mark.parametrize("special", ["/dev/zero", "fifo"])
def test_special_data_files_refused(tmp_path, special):
    from layerforge.api import Model
    from layerforge.errors import DataError

    if special == "fifo":
        path = tmp_path / "p.csv"
        os.mkfifo(path)
    else:
        path = Path(special)
    with pytest.raises(DataError, match="not a data file"):
        Model.from_yaml(write(tmp_path, BASE)).load_data(path)


def test_wide_csv_message_is_fast_and_short(tmp_path):
    from layerforge.api import Model
    from layerforge.errors import DataError

    (tmp_path / "wide.csv").write_text(",".join(["1"] * 50000) + "\n")
    with pytest.raises(DataError) as info:
        Model.from_yaml(write(tmp_path, BASE)).load_data(tmp_path / "wide.csv")
    assert len(info.value.render_plain()) < 2000


# ---------------------------------------------------------------------------------------------- 6. run directories

@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run")
    cfg = tmp / "m.yaml"
    cfg.write_text(BASE)
    result = runner.invoke(app, ["train", str(cfg), "--data", str(IRIS_CSV), "-o", str(tmp / "run"), "-q"], env=ENV)
    assert result.exit_code == 0, result.output
    return tmp / "run"


DAMAGE = {
    "config empty": ("config.yaml", "", "config.yaml: the file is empty"),
    "config null": ("config.yaml", "null\n", "config.yaml: it holds null"),
    "config list": ("config.yaml", "[1, 2]\n", "config.yaml: it holds a list"),
    "config scalar": ("config.yaml", "5\n", "config.yaml: it holds a single value"),
    "config bad yaml": ("config.yaml", "a: [\n", "config.yaml: not valid YAML"),
    "state NaN": ("state.json", "NaN", "state.json: it holds NaN"),
    "state seed": ("state.json", '{"seed": 1e30}', "state.json: seed must be a non-negative integer"),
    "state rng": ("state.json", '{"epoch": 1, "rng": 5}', "state.json: rng is not a random-generator state"),
    "state epoch": ("state.json", '{"epoch": -3}', "state.json: epoch must be"),
    "state json": ("state.json", '{"seed": 1,\n "epoch": }', "state.json:2:"),
    "schema scalar": ("schema.json", "5", "schema.json: it holds 5"),
    "schema encoders": ("schema.json", '{"encoders": {"out": {"classes": 3}}}', "schema.json: encoders.out"),
    "weights dir": ("weights.safetensors", None, "weights.safetensors: it is a directory"),
    "weights truncated": ("weights.safetensors", b"\x10\x00", "weights.safetensors: cannot read it"),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_damaged_run_directory(tmp_path, trained_run, case):
    name, content, needle = DAMAGE[case]
    run_dir = tmp_path / "run"
    shutil.copytree(trained_run, run_dir)
    target = run_dir / name
    target.unlink()
    if content is None:
        target.mkdir()
    elif isinstance(content, bytes):
        target.write_bytes(content)
    else:
        target.write_text(content)
    for command in (["predict", run_dir, "--data", IRIS_CSV], ["evaluate", run_dir, "--data", IRIS_CSV]):
        out = refused(run(*command), "damaged run directory", needle)
        assert str(target) in out


def test_optimizer_state_that_fits_no_weight(tmp_path, trained_run):
    from safetensors.numpy import load_file, save_file

    run_dir = tmp_path / "run"
    shutil.copytree(trained_run, run_dir)
    slots = load_file(str(run_dir / "optimizer.safetensors"))
    key = next(k for k in slots if "/" in k)
    slots[key] = np.zeros(5, np.float32)
    save_file(slots, str(run_dir / "optimizer.safetensors"))
    refused(run("predict", run_dir, "--data", IRIS_CSV), "damaged run directory: optimizer.safetensors",
            "belongs to no saved weight")


def test_resume_from_damaged_run_directory(tmp_path, trained_run):
    run_dir = tmp_path / "run"
    shutil.copytree(trained_run, run_dir)
    (run_dir / "state.json").write_text('{"epoch": 1, "rng": 5}')
    refused(run("train", write(tmp_path, BASE), "--resume", run_dir, "--data", IRIS_CSV, "-q",
                "training.epochs=2"), "damaged run directory: state.json")


# ---------------------------------------------------------------------------------------------- 7. graph references

def test_output_index_out_of_range(tmp_path):
    out = refused(run("validate", write(tmp_path, BASE + "outputs: ['out:7']\n")), "m.yaml:10:",
                  "'out' has 1 output(s); there is no :7")
    assert "1 error" not in out or "is not used" not in out


# ---------------------------------------------------------------------------------------------- 8. scale

def test_a_20000_layer_chain_validates(tmp_path):
    text = "input_shape: [4]\nlayers:\n" + "  - {type: Dense, units: 4}\n" * 20000
    result = run("validate", write(tmp_path, text))
    assert result.exit_code == 0 and "20000 layers" in result.output


def test_many_errors_print_the_first_50_and_a_count(tmp_path):
    text = "input_shape: [4]\nlayers:\n" + "  - {type: Dense, units: -4}\n" * 20000
    out = refused(run("validate", write(tmp_path, text)), "20,000 errors (the first 50 shown")
    assert len(out) < 50_000


def test_long_lines_are_cut_when_echoed(tmp_path):
    text = BASE.replace("name: t", "name: t\ndescription: " + "x" * 5_000_000 + "\nfoo: 1")
    out = refused(run("validate", write(tmp_path, text)), "unknown parameter 'foo'")
    assert len(out) < 5_000
    out = refused(run("validate", write(tmp_path, "layers: [" + "1, " * 100000 + "*x]\n")), "not valid YAML")
    assert len(out) < 5_000


# ---------------------------------------------------------------------------------------------- 9. outputs

def test_train_output_that_is_a_file(tmp_path):
    cfg = write(tmp_path, BASE)
    (tmp_path / "afile").write_text("keep me")
    refused(run("train", cfg, "--data", IRIS_CSV, "-o", tmp_path / "afile", "-q"), "--output is a file")
    refused(run("train", cfg, "--data", IRIS_CSV, "-o", tmp_path / "afile" / "run", "-q"), "is a file, not a folder")
    assert (tmp_path / "afile").read_text() == "keep me"


def test_symlink_loops_say_so(tmp_path):
    os.symlink(tmp_path / "l2", tmp_path / "l1")
    os.symlink(tmp_path / "l1", tmp_path / "l2")
    cfg = write(tmp_path, BASE)
    refused(run("validate", tmp_path / "l1"), "symbolic link loop")
    refused(run("train", cfg, "--data", IRIS_CSV, "-o", tmp_path / "l1", "-q"), "symbolic link loop")
    assert "symbolic link" in run("train", cfg, "--data", tmp_path / "l1", "-o", tmp_path / "r", "-q").output
    refused(run("predict", tmp_path / "l1", "--data", IRIS_CSV), "symbolic link loop")


def test_plain_words_for_an_empty_name_and_nan_rate(tmp_path):
    out = refused(run("validate", write(tmp_path, BASE.replace("name: out", "name: ''"))), "must not be empty")
    assert "String should match pattern" not in out
    text = BASE.replace("layers:\n", "layers:\n  - {type: Dropout, rate: .nan}\n")
    out = refused(run("validate", write(tmp_path, text)), "NaN is not a valid value")
    assert "less than 1" not in out


# ---------------------------------------------------------------------------------------------- 10. interrupted runs

def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_leftovers_of_killed_saves_are_cleaned_on_the_next_save(tmp_path):
    import socket

    from layerforge.io.atomic import MARKER, atomic_directory

    parent = tmp_path / "runs"
    parent.mkdir()
    dead = _dead_pid()
    stale = parent / f".old-run.{dead}-abc.tmp"
    stale.mkdir()
    (stale / MARKER).write_text(f"{socket.gethostname()} {dead}\n")
    (stale / "weights.safetensors").write_bytes(b"half")
    live = parent / f".other.{os.getpid()}-xyz.tmp"  # a save in progress (this process): kept
    live.mkdir()
    (live / MARKER).write_text(f"{socket.gethostname()} {os.getpid()}\n")
    mine = parent / ".notes.tmp"  # the user's own folder with a similar name: never touched
    mine.mkdir()
    (parent / "done").mkdir()
    leftover_copy = parent / f".done.old-{dead}"
    leftover_copy.mkdir()
    with atomic_directory(parent / "new") as tmp:
        (tmp / "a").write_text("1")
    assert not stale.exists() and not leftover_copy.exists()
    assert live.exists() and mine.exists() and (parent / "new" / "a").exists()
    assert not (parent / "new" / MARKER).exists()


def test_a_save_killed_before_its_marker_was_written_is_cleaned_too(tmp_path):
    """Killed between creating the temporary folder and writing its marker (CI caught it once): the folder is
    empty and named with the dead writer's pid, so it goes; one with content but no marker is never touched."""
    from layerforge.io.atomic import MARKER, clean_stale

    dead = _dead_pid()
    empty = tmp_path / f".run.{dead}-abc.tmp"
    empty.mkdir()
    half_marker = tmp_path / f".run.{dead}-def.tmp"
    half_marker.mkdir()
    (half_marker / MARKER).write_text("")
    unmarked = tmp_path / f".run.{dead}-ghi.tmp"
    unmarked.mkdir()
    (unmarked / "weights.safetensors").write_bytes(b"x")
    alive = tmp_path / f".run.{os.getpid()}-jkl.tmp"
    alive.mkdir()
    assert sorted(clean_stale(tmp_path)) == sorted([empty, half_marker])
    assert unmarked.exists() and alive.exists()


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_sigkill_during_training_leaves_the_last_good_run_loadable(tmp_path):
    import layerforge

    cfg = write(tmp_path, BASE.replace("epochs: 1", "epochs: 100000").replace("batch_size: 16", "batch_size: 1"))
    out = tmp_path / "runs" / "r"
    proc = subprocess.Popen([sys.executable, "-m", "layerforge", "train", str(cfg), "--data", str(IRIS_CSV),
                             "-o", str(out), "-q"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (out / "state.json").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # let it be in the middle of later epochs / saves
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert (out / "state.json").exists()
    model = layerforge.load(out)  # the last complete save loads
    assert json.loads((out / "state.json").read_text())["epoch"] >= 1 and model is not None
    # the next train into the same parent cleans what the kill left
    result = run("train", cfg, "--data", IRIS_CSV, "-o", tmp_path / "runs" / "r2", "-q", "training.epochs=1")
    assert result.exit_code == 0, result.output
    assert not [p for p in (tmp_path / "runs").iterdir() if p.name.startswith(".")]


# -- found after the merge with the training workflow (issue 12's callbacks and API)


@pytest.mark.parametrize("value", ["true", "5", "{a: 1}"])
def test_callbacks_that_are_not_a_list_of_callbacks(tmp_path, value):
    cfg = write(tmp_path, BASE)
    refused(run("validate", cfg, f"training.callbacks={value}"), "training.callbacks")


def test_one_callback_without_the_list(tmp_path):
    cfg = write(tmp_path, BASE)
    res = run("validate", cfg, "training.callbacks=EarlyStopping")
    assert res.exit_code == 0, res.output


def test_api_symlink_loop_and_damaged_run_config_are_layerforge_errors(tmp_path):
    import layerforge
    from layerforge.errors import ConfigError, DataError

    cfg = write(tmp_path, BASE + f"data:\n  train: {{path: {IRIS_CSV}, target: species}}\n")
    res = run("train", cfg, "-q", "-o", tmp_path / "run")
    assert res.exit_code == 0, res.output
    model = layerforge.load(tmp_path / "run")
    os.symlink(tmp_path / "b", tmp_path / "a")
    os.symlink(tmp_path / "a", tmp_path / "b")
    with pytest.raises(DataError, match="symbolic link loop"):
        model.predict(str(tmp_path / "a"))
    saved = tmp_path / "run" / "config.yaml"
    saved.write_text(saved.read_text().replace("units: 3", "units: -3"))
    with pytest.raises(ConfigError, match=r"config\.yaml:\d+:\d+: layers\[0\]\.units"):
        layerforge.load(tmp_path / "run")


def test_npz_of_a_zip_version_python_cannot_read(tmp_path):
    buf = io.BytesIO()
    np.savez(buf, x=np.zeros((2, 4)), y=np.zeros(2))
    data = bytearray(buf.getvalue())
    at = data.find(b"PK\x01\x02")
    data[at + 6:at + 8] = bytes([109, 0])  # "version needed to extract" 10.9: zipfile raises NotImplementedError
    (tmp_path / "odd.npz").write_bytes(bytes(data))
    cfg = write(tmp_path, BASE)
    refused(run("train", cfg, "-q", "--data", tmp_path / "odd.npz", "-o", tmp_path / "r"), "odd.npz",
            "zip file version")
