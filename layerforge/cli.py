"""The `layerforge` command. Thin: parse arguments, call the library, render with Rich.

Heavy modules (pydantic models, numpy, Numba) are imported inside the commands so
`layerforge --help` is instant and `validate`/`summary`/`layers`/`schema` never load Numba.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from . import __version__

app = typer.Typer(
    name="layerforge",
    help="Describe a neural network in YAML with the Keras layer set; inspect, train and run it.\n\n"
         "Example: [bold]layerforge train configs/iris.yaml[/]",
    no_args_is_help=True,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
    add_completion=False,
)

_state = {"debug": False}


def _console(stderr: bool = False):
    from rich.console import Console

    # soft_wrap: long lines are left to the terminal (and stay whole in logs and pipes)
    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def _run(fn):
    """Run a command body; user errors become a clear message and exit code 2, never a traceback."""
    from .errors import RunFailed, UserError

    try:
        return fn()
    except UserError as exc:
        if _state["debug"]:
            raise
        from .render import render_user_error

        render_user_error(exc, _console(stderr=True))
        raise typer.Exit(exc.exit_code) from None
    except RunFailed as exc:
        if _state["debug"]:
            raise
        _console(stderr=True).print(f"[bold red]training failed:[/] {exc}")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        _console(stderr=True).print("[yellow]interrupted[/]")
        raise typer.Exit(130) from None
    except OSError as exc:  # a path that cannot be read or written: the user's to fix
        if _state["debug"]:
            raise
        where = f": {exc.filename}" if exc.filename else ""
        _console(stderr=True).print(f"[bold red]error:[/] {exc.strerror or exc}{where}", highlight=False)
        raise typer.Exit(2) from None
    except (typer.Exit, typer.Abort, SystemExit):
        raise
    except RuntimeError as exc:
        if _state["debug"] or not str(exc).startswith("Symlink loop"):
            raise _internal_error(exc) from None
        # pathlib's resolve() before Python 3.13 reports a symlink loop as RuntimeError, not OSError(ELOOP)
        _console(stderr=True).print(f"[bold red]error:[/] {exc}: a symbolic link points (through others) back to "
                                    "itself", highlight=False)
        raise typer.Exit(2) from None
    except Exception as exc:  # a bug in layerforge, not the user's fault
        if _state["debug"]:
            raise
        _console(stderr=True).print(f"[bold red]internal error:[/] {type(exc).__name__}: {exc}\n"
                                    "run again with --debug for the traceback, and please report it")
        raise typer.Exit(1) from None


def _internal_error(exc: Exception):
    """Report a bug (not the user's fault) in one line and give the exit for it."""
    if _state["debug"]:
        return exc
    _console(stderr=True).print(f"[bold red]internal error:[/] {type(exc).__name__}: {exc}\n"
                                "run again with --debug for the traceback, and please report it")
    return typer.Exit(1)


def _version(value: bool):
    if value:
        typer.echo(f"layerforge {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks instead of short error messages."),
):
    _state["debug"] = debug


CONFIG_ARG = typer.Argument(..., help="The model's YAML file.", show_default=False)
OVERRIDES_ARG = typer.Argument(None, help="KEY=VALUE overrides, e.g. training.epochs=5 layers.2.units=64.",
                               show_default=False)


def _load(config: Path, overrides):
    from .config import load_config
    from .graph import build_graph

    spec = load_config(config, list(overrides or []))
    return spec, build_graph(spec)


ALLOW_CODE_OPT = typer.Option(False, "--allow-code", help="Allow Lambda `function:` to run Python code.")


def _allow_code(flag: bool) -> None:
    if flag:
        from .expressions import allow_code

        allow_code(True)


@app.command()
def validate(config: Path = CONFIG_ARG, overrides: Optional[list[str]] = OVERRIDES_ARG,
             allow_code: bool = ALLOW_CODE_OPT):
    """Check a config: YAML, parameters, layer connections and every shape. Reports all errors.

    Example: [bold]layerforge validate configs/mnist_cnn.yaml[/]
    """

    def body():
        from .config import load_config
        from .errors import ConfigError
        from .graph import build_graph

        _allow_code(allow_code)
        spec = load_config(config, list(overrides or []))
        problems = []
        try:
            graph = build_graph(spec)
        except ConfigError as exc:
            problems.extend(exc.problems)
            graph = None
        problems.extend(_missing_data_files(spec))
        if problems:
            raise ConfigError(problems=problems)
        n = len(graph.nodes)
        _console().print(f"[green]OK[/] {config}: {n} layer{'s' if n != 1 else ''}, "
                         f"{graph.total_params:,} parameters, output {_shapes(graph.output_shapes)}")

    _run(body)


def _shapes(shapes) -> str:
    from .layers.base import show_shape

    return ", ".join(show_shape(tuple(s)) for s in shapes)


def _data_file_problem(path: Path) -> Optional[str]:
    """Why ``path`` cannot be a data file (missing, a symlink loop, a device or FIFO), or None."""
    import errno
    import os
    import stat

    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        return "symbolic link loop" if exc.errno == errno.ELOOP else "data file not found"
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        return "not a regular file (a device, FIFO or socket)"
    return None


def _missing_data_files(spec):
    problems = []
    data = spec.config.data
    if data is None:
        return problems
    for part in ("train", "validation", "test"):
        src = getattr(data, part)
        if src is None:
            continue
        for key in ("path", "target_path"):
            value = getattr(src, key)
            why = _data_file_problem(spec.base_dir / value) if value else None
            if why:
                problems.append(spec.source.problem(("data", part, key), f"{why}: {spec.base_dir / value}",
                                                    hint="relative paths start from the config file's folder"))
    return problems


@app.command()
def summary(
    config: Path = CONFIG_ARG,
    overrides: Optional[list[str]] = OVERRIDES_ARG,
    batch_size: Optional[int] = typer.Option(None, "--batch-size", "-b", min=1,
                                             help="Also show activation memory for this batch size."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    allow_code: bool = ALLOW_CODE_OPT,
):
    """Keras-style table: output shapes, parameters, FLOPs and memory per layer.

    Example: [bold]layerforge summary configs/mnist_cnn.yaml --batch-size 64[/]
    """

    def body():
        from .summary import render_summary, summary_data

        _allow_code(allow_code)
        _, graph = _load(config, overrides)
        data = summary_data(graph, batch_size)
        if as_json:
            typer.echo(json.dumps(data, indent=2))
        else:
            render_summary(data, _console())

    _run(body)


@app.command()
def layers(
    type_name: Optional[str] = typer.Argument(None, metavar="[TYPE]", help="Show one layer's parameters."),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
):
    """The layer catalogue by family, or one layer's parameters with defaults and Keras 1 names.

    Example: [bold]layerforge layers Conv2D[/]
    """

    def body():
        from . import catalog

        if type_name is None:
            rows = catalog.catalogue()
            if as_json:
                typer.echo(json.dumps(rows, indent=2))
            else:
                catalog.render_catalogue(rows, _console())
        else:
            info = catalog.layer_info(type_name)
            if as_json:
                typer.echo(json.dumps(info, indent=2, default=str))
            else:
                catalog.render_layer_info(info, _console())

    _run(body)


@app.command()
def schema(output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write to this file.")):
    """JSON Schema of the config format, for editor completion and checking.

    Example: [bold]layerforge schema -o layerforge.schema.json[/], then put
    [bold]# yaml-language-server: $schema=layerforge.schema.json[/] at the top of a config.
    """

    def body():
        from .schema import config_schema

        text = json.dumps(config_schema(), indent=2)
        if output:
            from .io.atomic import atomic_write_text

            atomic_write_text(output, text + "\n")
            _console(stderr=True).print(f"wrote {output}")
        else:
            typer.echo(text)

    _run(body)


def _set_threads(threads: Optional[int]):
    """BLAS and Numba threads together (before either loads when possible); None keeps all cores."""
    if threads:
        from .engine.threads import set_threads

        set_threads(threads)


def _set_max_memory(text: Optional[str]) -> None:
    """`--max-memory`: the ceiling check_memory (memory_budget.py) compares its estimate with."""
    from .memory_budget import parse_size, set_max_memory

    try:
        set_max_memory(parse_size(text) if text is not None else None)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--max-memory") from None


def _check_train_output(output: Optional[Path]) -> None:
    """`train --output` names a run directory: refuse a file, a symlink loop or a path under a file up front."""
    import errno
    import os

    from .errors import ConfigError, Problem

    if output is None:
        return

    def refuse(message: str, hint: str):
        raise ConfigError(problems=[Problem(message=message, file=str(output), hint=hint)])

    try:
        os.stat(output)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            refuse("--output is a symbolic link loop", "point the link at a folder, or choose another --output")
        if exc.errno == errno.ENOTDIR:
            parent = next((p for p in output.parents if p.is_file()), output.parent)
            refuse(f"--output cannot be created: {parent} is a file, not a folder",
                   "choose an --output whose parent folders are folders")
        return
    if not output.is_dir():
        refuse("--output is a file; train writes a run directory (a folder) there",
               f"choose a folder name, e.g. --output {output.with_suffix('')}-run")


@app.command()
def train(
    config: Path = CONFIG_ARG,
    overrides: Optional[list[str]] = OVERRIDES_ARG,
    output: Optional[Path] = typer.Option(None, "--output", "-o",
                                          help="Run directory to write (default runs/<name>-<timestamp>)."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the run in this directory."),
    data: Optional[Path] = typer.Option(None, "--data", help="Training data file (instead of data.train)."),
    validation_data: Optional[Path] = typer.Option(None, "--validation-data", help="Validation data file."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars; only the final line."),
    allow_code: bool = typer.Option(False, "--allow-code", help="Allow Lambda `function:` to run Python code."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="Threads for BLAS and Numba."),
    max_memory: Optional[str] = typer.Option(None, "--max-memory", help="Memory ceiling for the estimate made "
                                             "before training (e.g. 64G); default: the machine's free memory."),
):
    """Train a model and write a run directory (config, weights, optimizer state, history).

    Example: [bold]layerforge train configs/iris.yaml training.epochs=50[/]
    """
    _set_threads(threads)
    _set_max_memory(max_memory)

    def body():
        from .engine.runner import train_command

        _check_train_output(output)
        train_command(config, overrides=list(overrides or []), output=output, resume=resume, data=data,
                      validation_data=validation_data, quiet=quiet, allow_code=allow_code, threads=threads,
                      console=_console())

    _run(body)


@app.command()
def predict(
    run_dir: Path = typer.Argument(..., help="A run directory written by `train`.", show_default=False),
    data: Path = typer.Option(..., "--data", help="Input data file (CSV/TSV, NPY or NPZ).", show_default=False),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write predictions here (.csv or .npy); "
                                                                       "default: print them."),
    probabilities: bool = typer.Option(False, "--probabilities", help="Class probabilities instead of labels."),
    batch_size: int = typer.Option(256, "--batch-size", "-b", min=1, help="Samples per forward pass."),
    allow_code: bool = typer.Option(False, "--allow-code", help="Allow Lambda `function:` to run Python code."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="Threads for BLAS and Numba."),
):
    """Run a trained model on new data; class labels are mapped back to the training labels.

    Example: [bold]layerforge predict runs/iris --data new.csv --output preds.csv[/]
    """
    _set_threads(threads)

    def body():
        from .engine.runner import predict_command

        predict_command(run_dir, data=data, output=output, probabilities=probabilities, batch_size=batch_size,
                        allow_code=allow_code, console=_console())

    _run(body)


@app.command()
def evaluate(
    run_dir: Path = typer.Argument(..., help="A run directory written by `train`.", show_default=False),
    data: Optional[Path] = typer.Option(None, "--data", help="Labelled data (default: data.test of the config)."),
    batch_size: int = typer.Option(256, "--batch-size", "-b", min=1, help="Samples per forward pass."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
    allow_code: bool = typer.Option(False, "--allow-code", help="Allow Lambda `function:` to run Python code."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="Threads for BLAS and Numba."),
):
    """Loss and metrics of a trained model on labelled data.

    Example: [bold]layerforge evaluate runs/iris --data examples/data/iris.csv[/]
    """
    _set_threads(threads)

    def body():
        from .engine.runner import evaluate_command

        evaluate_command(run_dir, data=data, batch_size=batch_size, as_json=as_json, allow_code=allow_code,
                         console=_console())

    _run(body)


@app.command()
def bench(
    config: Path = CONFIG_ARG,
    overrides: Optional[list[str]] = OVERRIDES_ARG,
    batch_size: Optional[int] = typer.Option(None, "--batch-size", "-b", min=1,
                                             help="Samples per batch (default: the config's training.batch_size)."),
    steps: int = typer.Option(20, "--steps", "-n", min=1, help="Timed training steps and inference batches."),
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="Threads for BLAS and Numba "
                                                                         "(default: all cores)."),
    allow_code: bool = ALLOW_CODE_OPT,
):
    """Time training and inference on synthetic data: per-layer forward/backward, compile time, samples/s.

    The first batch (JIT compile, or loading the compiled kernels from the cache) is reported apart from the
    steady-state time.

    Example: [bold]layerforge bench configs/mnist_cnn.yaml --batch-size 64 --steps 20[/]
    """
    _set_threads(threads)

    def body():
        from .bench import render_bench, run_bench

        _allow_code(allow_code)
        data = run_bench(config, list(overrides or []), batch_size=batch_size, steps=steps)
        if as_json:
            typer.echo(json.dumps(data, indent=2))
        else:
            render_bench(data, _console())

    _run(body)


def main():
    app(prog_name="layerforge")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
