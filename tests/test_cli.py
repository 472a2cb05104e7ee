"""The `layerforge` command through Typer's CliRunner: version, help, validate, summary, layers, schema.

train / predict / evaluate are tested elsewhere. User errors must exit with code 2, name the file, line
and config path, and never show a traceback.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import layerforge
from layerforge.cli import app
from layerforge.layers import TYPE_NAMES, load_all
from layerforge.layers.documented import ALL_DOCUMENTED

ROOT = Path(__file__).resolve().parent.parent
IRIS = ROOT / "configs" / "iris.yaml"
# Rich wraps at 80 columns when not writing to a terminal; a wide console keeps each message on one line.
ENV = {"COLUMNS": "250", "NO_COLOR": "1"}

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args], env=ENV)


def no_traceback(result) -> None:
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)


def user_error(result) -> str:
    """Assert a clean user error (exit 2, message on stderr, no traceback); return stderr."""
    assert result.exit_code == 2, result.output
    no_traceback(result)
    assert result.stderr.strip()
    assert "internal error" not in result.output
    return result.stderr


def write(folder: Path, text: str, name: str = "m.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------ version and help

def test_version():
    result = run("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"layerforge {layerforge.__version__}"


def test_no_arguments_shows_help():
    result = run()
    assert "Usage" in result.output and "validate" in result.output
    no_traceback(result)


COMMANDS = sorted(typer.main.get_command(app).commands)


def test_expected_commands_exist():
    assert {"validate", "summary", "train", "predict", "evaluate", "layers", "schema"} <= set(COMMANDS)


@pytest.mark.parametrize("args", [["--help"], ["-h"]] + [[c, "--help"] for c in COMMANDS], ids=" ".join)
def test_help_has_an_example(args):
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert "Usage" in result.stdout
    assert "Example" in result.stdout
    if len(args) == 2:
        assert f"layerforge {args[0]}" in result.stdout  # the example uses the command it documents


# ------------------------------------------------------------------------------------ validate

def test_validate_ok():
    result = run("validate", IRIS)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("OK ") and "iris.yaml" in out
    assert "4 layers" in out and "403 parameters" in out and "(None, 3)" in out


def test_validate_applies_overrides():
    result = run("validate", IRIS, "layers.0.units=8")
    assert result.exit_code == 0, result.output
    assert "235 parameters" in result.stdout  # 4*8+8 + 8*16+16 + 16*3+3


# A config each command rejects, and the texts its message must contain (file:line(:column), the config path...).
USER_ERRORS = [
    pytest.param(("validate", "m.yaml"), """
        input_shape: [4]
        layers:
          - {type: Dense, units: 8}
          - {type: Dens, units: 3}
    """, ["m.yaml:4:",  # file:line(:column)
          "layers[1].type",  # the config path
          "unknown layer type 'Dens'", "did you mean Dense",
          "{type: Dens, units: 3}"],  # the offending line is quoted
        id="validate_unknown_type_did_you_mean"),
    pytest.param(("validate", "m.yaml"), """
        input_shape: [4]
        layers:
          - {type: Desne, units: 3}
    """, ["m.yaml:3:", "layers[0].type", "did you mean"],
        id="validate_unknown_keras1_style_type_suggests_canonical_spelling"),
    pytest.param(("validate", "m.yaml"), """
        input_shape: [4]
        layers:
          - {type: Dense, units: 8, activaton: relu}
    """, ["m.yaml:3:", "layers[0].activaton", "unknown parameter 'activaton'", "did you mean 'activation'"],
        id="validate_unknown_parameter_did_you_mean"),
    pytest.param(("validate", "m.yaml"), """
        input_shape: [4]
        layers:
          - {type: Dense, units: 8}
          - {type: Dense, units: 3, activation: rleu}
    """, ["m.yaml:4:", "layers[1].activation", "rleu", "relu"],
        id="validate_bad_value_reports_path_and_found"),
    pytest.param(("validate", "m.yaml"), """
        input_shape: [4]
        layers:
          - {type: Dens, units: 8}
          - {type: Dropout, rate: 0.1}
          - {type: Dense, units: -3}
    """, ["m.yaml:3:", "m.yaml:5:", "layers[0].type", "layers[2].units", "2 errors"],
        id="validate_reports_every_error"),
    pytest.param(("validate", "m.yaml"), """
        input_shape: [4]
        layers:
          - {type: Dense, units: 8}
          - {type: MaxPooling2D}
    """, ["m.yaml:4:", "layers[1]",
          "(None, 8)"],  # the shape it received
        id="validate_shape_error"),
    pytest.param(("validate", "m.yaml"), """
        inputs:
          - {name: left, shape: [4]}
          - {name: right, shape: [4]}
        layers:
          - {name: a, type: Dense, units: 2, inputs: [left]}
          - {name: b, type: Dense, units: 2, inputs: [rihgt]}
          - {name: c, type: Concatenate, inputs: [a, b]}
    """, ["m.yaml:6:", "layers[1].inputs[0]", "rihgt", "did you mean 'right'"],
        id="validate_graph_error_unknown_input"),
    pytest.param(("validate", "m.yaml"), """
        input_shape: [4]
        layers:
          - {type: Dense, units: 3}
        training:
          loss: mse
          optimizer: {type: adamm}
    """, ["m.yaml:6:", "training.optimizer", "'adam'"],
        id="validate_training_section_error"),
    pytest.param(("validate", "m.yaml"), """
        input_shape: [4]
        layers:
          - {type: Dense, units: 3}
        data:
          train: {path: nowhere.csv}
    """, ["m.yaml:5:", "data.train.path", "nowhere.csv"],
        id="validate_missing_data_file"),
    pytest.param(("validate", "m.yaml"), """
        input_shape: [4]
        layers:
          - {type: Dense, units: 3
    """, ["m.yaml:", "YAML"],
        id="validate_yaml_syntax_error"),
    pytest.param(("summary", "m.yaml", "--json"), """
        input_shape: [4]
        layers:
          - {type: Dense, units: 3, activation: sofmax}
    """, ["m.yaml:3:", "layers[0].activation"],
        id="summary_user_error"),
]


@pytest.mark.parametrize(("args", "config", "expected"), USER_ERRORS)
def test_user_error_names_file_line_and_path(tmp_path, monkeypatch, args, config, expected):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, config)
    err = user_error(run(*args))
    for text in expected:
        assert text in err, text


def test_validate_missing_file_and_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    err = user_error(run("validate", "absent.yaml"))
    assert "absent.yaml" in err
    err = user_error(run("validate", str(tmp_path)))
    assert "directory" in err


def test_validate_bad_override(tmp_path):
    err = user_error(run("validate", IRIS, "layers.0.units=zero"))
    assert "layers[0].units" in err or "layers.0.units" in err


def test_debug_shows_the_exception(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, """
        input_shape: [4]
        layers:
          - {type: Dens, units: 3}
    """)
    from layerforge.errors import ConfigError

    result = run("--debug", "validate", "m.yaml")
    assert isinstance(result.exception, ConfigError)
    # and the next run without --debug is back to a clean message
    user_error(run("validate", "m.yaml"))


# ------------------------------------------------------------------------------------ summary

def test_summary_table():
    result = run("summary", IRIS)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert 'Model: "iris"' in out
    for text in ("Layer (type)", "Output Shape", "Param #", "dense (Dense)", "dropout (Dropout)",
                 "dense_1 (Dense)", "species (Dense)", "(None, 16)", "(None, 3)"):
        assert text in out, text
    assert "Total params: 403" in out
    assert "Trainable params: 403" in out
    assert "Non-trainable params: 0" in out
    no_traceback(result)


def test_summary_batch_size_adds_memory_line():
    result = run("summary", IRIS, "--batch-size", "64")
    assert result.exit_code == 0, result.output
    assert "batch of 64" in result.stdout


def test_summary_json():
    result = run("summary", IRIS, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["total_params"] == 403
    assert data["trainable_params"] == 403
    assert data["non_trainable_params"] == 0
    layers = data["layers"]
    assert [layer["name"] for layer in layers] == ["dense", "dropout", "dense_1", "species"]
    assert [layer["type"] for layer in layers] == ["Dense", "Dropout", "Dense", "Dense"]
    assert [layer["output_shape"] for layer in layers] == [[16], [16], [16], [3]]
    assert [layer["params"] for layer in layers] == [80, 0, 272, 51]
    assert all(isinstance(layer["flops"], int) and layer["flops"] >= 0 for layer in layers)
    assert layers[0]["flops"] == 4 * 16 and layers[3]["flops"] == 16 * 3
    assert sum(layer["params"] for layer in layers) == data["total_params"]


def test_summary_json_applies_overrides():
    data = json.loads(run("summary", IRIS, "--json", "layers.0.units=8").stdout)
    assert data["total_params"] == 235


def test_summary_json_keras1_names_are_shown_canonically(tmp_path):
    path = write(tmp_path, """
        layers:
          - {type: Dense, output_dim: 5, init: he_normal, input_dim: 3}
          - {type: Dropout, p: 0.5}
    """)
    data = json.loads(run("summary", path, "--json").stdout)
    assert data["total_params"] == 20
    assert [layer["type"] for layer in data["layers"]] == ["Dense", "Dropout"]
    assert data["inputs"][0]["shape"] == [3]


# ------------------------------------------------------------------------------------ layers

@pytest.fixture(scope="module")
def catalogue_rows():
    result = run("layers", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_layers_table():
    result = run("layers")
    assert result.exit_code == 0, result.output
    assert "Dense" in result.stdout and "Dropout" in result.stdout
    assert "layer types" in result.stdout
    no_traceback(result)


def test_layers_table_never_cuts_type_names_at_80_columns(catalogue_rows):
    result = runner.invoke(app, ["layers"], env={"COLUMNS": "80", "NO_COLOR": "1"})
    assert result.exit_code == 0
    assert "…" not in result.stdout
    words = set(result.stdout.replace(",", " ").split())
    assert {n for row in catalogue_rows for n in [row["type"], *row["aliases"]]} <= words


def test_layers_json_rows(catalogue_rows):
    assert isinstance(catalogue_rows, list) and catalogue_rows
    for row in catalogue_rows:
        assert {"type", "aliases", "family", "trainable"} <= set(row)
        assert isinstance(row["type"], str) and isinstance(row["family"], str)
        assert isinstance(row["aliases"], list) and isinstance(row["trainable"], bool)
    names = [n for row in catalogue_rows for n in [row["type"], *row["aliases"]]]
    assert len(names) == len(set(names)), "a name is listed twice"
    load_all()
    assert set(names) == set(TYPE_NAMES)


@pytest.mark.parametrize("name", ALL_DOCUMENTED)
def test_every_documented_keras1_layer_is_listed(name, catalogue_rows):
    load_all()
    if name not in TYPE_NAMES:
        pytest.skip(f"layer type {name} not registered yet")
    hits = [row for row in catalogue_rows if name == row["type"] or name in row["aliases"]]
    assert len(hits) == 1


def test_layers_detail_table():
    result = run("layers", "Dense")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("Dense (core)")
    for text in ("units", "required", "activation", "'linear'", "kernel_initializer", "'glorot_uniform'",
                 "output_dim", "W_regularizer", "Keras 1 name"):
        assert text in out, text


def test_layers_detail_json():
    result = run("layers", "Dense", "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["type"] == "Dense" and info["family"] == "core"
    params = {p["name"]: p for p in info["parameters"]}
    assert params["units"]["required"] is True and params["units"]["keras1"] == ["output_dim"]
    assert params["activation"]["default"] == "linear"
    assert params["use_bias"]["default"] is True


def test_layers_detail_of_a_keras1_alias():
    load_all()
    if "Convolution2D" not in TYPE_NAMES:
        pytest.skip("layer type Convolution2D not registered yet")
    result = run("layers", "Convolution2D")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("Conv2D (")
    assert "'Convolution2D' is an alias" in out
    assert "filters" in out and "nb_filter" in out and "border_mode" in out
    info = json.loads(run("layers", "Convolution2D", "--json").stdout)
    assert info["type"] == "Conv2D" and info["requested"] == "Convolution2D"
    assert "Convolution2D" in info["documented_keras1"]


def test_layers_detail_of_a_preset_alias():
    result = run("layers", "Concatenate", "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["type"] == "Merge" and info["preset"] == {"mode": "concat"}
    assert "mode=concat" in run("layers", "Concatenate").stdout


def test_layers_unknown_type():
    err = user_error(run("layers", "Dnese"))
    assert "unknown layer type 'Dnese'" in err and "did you mean Dense" in err
    err = user_error(run("layers", "Dnese", "--json"))
    assert "did you mean Dense" in err


# ------------------------------------------------------------------------------------ schema

def check_schema(schema: dict) -> None:
    assert "$defs" in schema and "properties" in schema
    assert schema["properties"]["layers"]["items"] == {"$ref": "#/$defs/Layer"}
    layer_defs = {k: v for k, v in schema["$defs"].items() if k.startswith("layer_")}
    load_all()
    assert {k.removeprefix("layer_") for k in layer_defs} == {canonical for canonical, _ in TYPE_NAMES.values()}
    for name, definition in layer_defs.items():
        assert definition["additionalProperties"] is False, name
        assert "type" in definition["required"], name
    assert set(schema["$defs"]["Layer"]["properties"]["type"]["enum"]) == set(TYPE_NAMES)
    assert schema["additionalProperties"] is False  # the top level is strict too


def test_schema_stdout():
    result = run("schema")
    assert result.exit_code == 0, result.output
    check_schema(json.loads(result.stdout))


def test_schema_to_file(tmp_path):
    target = tmp_path / "layerforge.schema.json"
    result = run("schema", "-o", target)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""  # the schema went to the file, not the terminal
    assert str(target) in result.stderr
    written = json.loads(target.read_text(encoding="utf-8"))
    check_schema(written)
    assert written == json.loads(run("schema").stdout)
    assert not [p for p in tmp_path.iterdir() if p != target], "no temporary file left behind"


def test_schema_to_a_new_folder(tmp_path):
    target = tmp_path / "new" / "s.json"
    result = run("schema", "--output", target)
    assert result.exit_code == 0, result.output
    check_schema(json.loads(target.read_text(encoding="utf-8")))


def test_schema_to_a_directory_shows_no_traceback(tmp_path):
    result = run("schema", "-o", tmp_path)
    assert result.exit_code != 0
    no_traceback(result)
    assert tmp_path.is_dir() and not list(tmp_path.iterdir()), "nothing written, no temporary file left"


def test_schema_to_a_directory_is_a_user_error(tmp_path):
    err = user_error(run("schema", "-o", tmp_path))
    assert str(tmp_path) in err


# ------------------------------------------------------------------------------------ no numba on the fast path

def test_inspection_path_does_not_import_numba():
    code = ("import sys\n"
            "import layerforge.cli, layerforge.summary, layerforge.config, layerforge.graph, layerforge.catalog\n"
            "layerforge.layers.load_all()\n"
            "import layerforge.schema\n"
            "layerforge.schema.config_schema()\n"
            "from layerforge.config import load_config\n"
            "from layerforge.graph import build_graph\n"
            "from layerforge.summary import summary_data\n"
            f"summary_data(build_graph(load_config({str(IRIS)!r})))\n"
            "print('numba' in sys.modules, any(m.startswith('layerforge.kernels') for m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]
