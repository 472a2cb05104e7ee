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

from .. import __version__

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
    from ..errors import RunFailed, UserError

    try:
        return fn()
    except UserError as exc:
        if _state["debug"]:
            raise
        from ..render import render_user_error

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
    except BrokenPipeError:  # `layerforge predict ... | head`: the reader has what it wanted; end quietly
        import os
        import sys

        try:  # point stdout at /dev/null so Python's flush at exit does not fail on the closed pipe again
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except OSError:
            pass
        raise typer.Exit(0) from None
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
    from ..engine import startup

    startup.start()  # the engine's process settings, explicitly (engine/startup.py)


CONFIG_ARG = typer.Argument(..., help="The model's YAML file.", show_default=False)
OVERRIDES_ARG = typer.Argument(None, help="KEY=VALUE overrides, e.g. training.epochs=5 layers.2.units=64.",
                               show_default=False)


def _load(config: Path, overrides, allow_code: bool):
    from ..config import load_config
    from ..graph import build_graph

    spec = load_config(config, list(overrides or []), allow_code=allow_code)
    return spec, build_graph(spec)


ALLOW_CODE_OPT = typer.Option(False, "--allow-code", help="Allow Lambda `function:` to run Python code.")


@app.command()
def validate(config: Path = CONFIG_ARG, overrides: Optional[list[str]] = OVERRIDES_ARG,
             allow_code: bool = ALLOW_CODE_OPT):
    """Check a config: YAML, parameters, layer connections and every shape. Reports all errors.

    Example: [bold]layerforge validate configs/mnist_cnn.yaml[/]
    """

    def body():
        from ..config import load_config
        from ..errors import ConfigError
        from ..graph import build_graph
        from ..layers.base import show_shapes

        spec = load_config(config, list(overrides or []), allow_code=allow_code)
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
                         f"{graph.total_params:,} parameters, output {show_shapes(list(graph.output_shapes))}")

    _run(body)


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
    graph_file: Optional[Path] = typer.Option(None, "--graph", help="Also draw the layer graph with shapes: "
                                              ".svg/.png/.pdf (Graphviz's dot), .dot or .mmd (Mermaid) text."),
):
    """Keras-style table: output shapes, parameters, FLOPs and memory per layer.

    Example: [bold]layerforge summary configs/mnist_cnn.yaml --batch-size 64[/],
    [bold]layerforge summary configs/seq_tagger.yaml --graph model.svg[/]
    """

    def body():
        from ..summary import render_summary, summary_data

        _, graph = _load(config, overrides, allow_code)
        data = summary_data(graph, batch_size)
        if as_json:
            typer.echo(json.dumps(data, indent=2))
        else:
            render_summary(data, _console())
        if graph_file is not None:
            from ..viz.model_graph import write_graph

            existed = {p: p.exists() for p in (Path(graph_file), Path(graph_file).with_suffix(".dot"))}
            written, note = write_graph(graph, graph_file)
            again = " (replacing the earlier file)" if existed.get(Path(written)) else ""
            _console(stderr=True).print(f"wrote {written}{again}: {note}", highlight=False)

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
        from .. import catalog

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
        from ..schema import config_schema

        text = json.dumps(config_schema(), indent=2)
        if output:
            from ..io.atomic import atomic_write_text

            atomic_write_text(output, text + "\n")
            _console(stderr=True).print(f"wrote {output}")
        else:
            typer.echo(text)

    _run(body)


def _set_threads(threads: Optional[int]):
    """BLAS and Numba threads together (before either loads when possible); None keeps all cores."""
    if threads:
        from ..kernels.threads import set_threads

        set_threads(threads)


def _set_max_memory(text: Optional[str]) -> None:
    """`--max-memory`: the ceiling check_memory (memory_budget.py) compares its estimate with."""
    from ..memory_budget import parse_size, set_max_memory

    try:
        set_max_memory(parse_size(text) if text is not None else None)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--max-memory") from None


def _check_train_output(output: Optional[Path]) -> None:
    """`train --output` names a run directory: refuse a file, a symlink loop or a path under a file up front."""
    import errno
    import os

    from ..errors import ConfigError, Problem

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
    config: Optional[Path] = typer.Argument(None, help="The model's YAML file (not needed with --resume).",
                                            show_default=False),
    overrides: Optional[list[str]] = OVERRIDES_ARG,
    output: Optional[Path] = typer.Option(None, "--output", "-o",
                                          help="Run directory to write (default runs/<name>-<timestamp>)."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the run in this directory (its own "
                                                                 "config and overrides unless CONFIG is given)."),
    data: Optional[Path] = typer.Option(None, "--data", help="Training data file (instead of data.train)."),
    validation_data: Optional[Path] = typer.Option(None, "--validation-data", help="Validation data file."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars; only the final line."),
    allow_code: bool = ALLOW_CODE_OPT,
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="Threads for BLAS and Numba."),
    distributed: bool = typer.Option(False, "--distributed",
                                     help="Data-parallel training over MPI: run under `mpirun -n N` (extra "
                                          "layerforge[mpi]); each rank takes 1/N of every batch."),
    sync_batchnorm: bool = typer.Option(False, "--sync-batchnorm",
                                        help="With --distributed: BatchNormalization statistics over the whole "
                                             "global batch (default: per rank, as Horovod)."),
    init_from: Optional[Path] = typer.Option(None, "--init-from", help="Fine-tune: start from the weights of this "
                                                                       "run directory (matched by layer name)."),
    max_memory: Optional[str] = typer.Option(None, "--max-memory", help="Memory ceiling for the estimate made "
                                             "before training (e.g. 64G); default: the machine's free memory."),
):
    """Train a model and write a run directory (config, weights, optimizer state, history).

    With data.test in the config, the run ends with the test metrics.

    Example: [bold]layerforge train configs/iris.yaml training.epochs=50[/], later
    [bold]layerforge train --resume runs/iris-20250101-120000 training.epochs=80[/]; on 2 processes:
    [bold]mpirun -n 2 layerforge train configs/iris.yaml --distributed[/]; fine-tune an imported model:
    [bold]layerforge train my.yaml --init-from runs/imported[/]
    """
    _set_threads(threads)
    _set_max_memory(max_memory)
    overrides = list(overrides or [])
    if config is not None and "=" in str(config) and not config.exists():  # `train --resume RUN key=value`
        overrides.insert(0, str(config))
        config = None
    if distributed or sync_batchnorm:
        _train_distributed(config, overrides, output, resume, data, validation_data, quiet, allow_code, threads,
                           sync_batchnorm, init_from)
        return

    def body():
        from .commands import train_command

        _check_train_output(output)
        console = _console()
        result = train_command(config, overrides=overrides, output=output, resume=resume, data=data,
                               validation_data=validation_data, quiet=quiet, allow_code=allow_code,
                               console=console, init_from=init_from)
        _show_training_result(result, console, quiet=quiet)

    _run(body)


def _show_training_result(result: dict, console, *, quiet: bool = False) -> None:
    from ..engine.progress import format_logs
    from ..errors import RunFailed

    for note in result["notes"]:
        console.print(f"[dim]{note}[/]", highlight=False)
    if result["failed"]:
        raise RunFailed(result["failed"])
    history = result["history"]
    last = {k: v[-1] for k, v in history.history.items()}
    run_dir = result["run_dir"]
    console.print(f"[green]done[/] {len(history.epoch)} epochs in {result['seconds']:.1f}s  {format_logs(last)}",
                  highlight=False)
    if result["test"] is not None:
        console.print(f"[bold]test[/] (data.test)  {format_logs(result['test'])}", highlight=False)
    console.print(f"run saved to [bold]{run_dir}[/]  (predict: layerforge predict {run_dir} --data FILE)",
                  highlight=False)
    if not quiet and console.is_terminal:  # the validation loss at a glance
        from ..viz.sparkline import loss_sparkline_line

        rows = [dict(zip(history.history, values)) for values in zip(*history.history.values())]
        line = loss_sparkline_line(rows)
        if line:
            console.print(line, highlight=False)


def _train_distributed(config, overrides, output, resume, data, validation_data, quiet, allow_code, threads,
                       sync_batchnorm, init_from):
    def body():
        from ..distributed.train import distributed_train_command

        distributed_train_command(config, overrides=list(overrides or []), output=output, resume=resume, data=data,
                                  validation_data=validation_data, quiet=quiet, allow_code=allow_code,
                                  threads=threads, sync_batchnorm=sync_batchnorm, console=_console(),
                                  init_from=init_from)

    _run(body)


@app.command()
def predict(
    run_dir: Path = typer.Argument(..., help="A run directory written by `train`.", show_default=False),
    data: Path = typer.Option(..., "--data", help="Input data file (CSV/TSV, NPY or NPZ).", show_default=False),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write predictions here (.csv, .tsv, .npy "
                                                                       "or .npz); default: print them."),
    probabilities: bool = typer.Option(False, "--probabilities", help="Class probabilities instead of labels."),
    keep_columns: Optional[str] = typer.Option(None, "--keep-columns", help="Input columns to pass through, "
                                                                            "e.g. id,date (CSV input)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --output file."),
    batch_size: int = typer.Option(256, "--batch-size", "-b", min=1, help="Samples per forward pass."),
    allow_code: bool = ALLOW_CODE_OPT,
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="Threads for BLAS and Numba."),
):
    """Run a trained model on new data; class labels are mapped back to the training labels.

    Example: [bold]layerforge predict runs/iris --data new.csv --output preds.csv --keep-columns id[/]
    """
    _set_threads(threads)

    def body():
        from .commands import predict_command

        keep = [c.strip() for c in keep_columns.split(",") if c.strip()] if keep_columns else None
        result = predict_command(run_dir, data=data, output=output, probabilities=probabilities,
                                 batch_size=batch_size, allow_code=allow_code, keep_columns=keep, overwrite=overwrite)
        if "written" in result:
            _console(stderr=True).print(f"wrote {result['n']} predictions to {result['written']}", highlight=False)
        else:
            _print_predictions(result)

    _run(body)


PRINT_MAX_COLUMNS = 32  # wider outputs (images, sequences) are written with -o, not printed


def _print_predictions(result: dict) -> None:
    """The predictions as aligned text columns, every number whole; a note instead for outputs too wide."""
    header, columns = result["header"], result["columns"]
    if len(header) > PRINT_MAX_COLUMNS:
        shapes = ", ".join(str(s) for s in result["shapes"])
        _console(stderr=True).print(
            f"the predictions have shape {shapes} ({len(header)} values per sample), too many to print; write "
            "them with -o preds.npy (keeps the shape) or -o preds.csv", highlight=False)
        return
    texts = [list(map(str, col)) for col in columns]
    widths = [max([len(h)] + [len(t) for t in col]) for h, col in zip(header, texts)]
    typer.echo("  ".join(h.rjust(w) for h, w in zip(header, widths)))
    for row in zip(*texts):
        typer.echo("  ".join(v.rjust(w) for v, w in zip(row, widths)))


@app.command()
def evaluate(
    run_dir: Path = typer.Argument(..., help="A run directory written by `train`.", show_default=False),
    data: Optional[Path] = typer.Option(None, "--data", help="Labelled data (default: data.test of the config)."),
    batch_size: int = typer.Option(256, "--batch-size", "-b", min=1, help="Samples per forward pass."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
    allow_code: bool = ALLOW_CODE_OPT,
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="Threads for BLAS and Numba."),
):
    """Loss and metrics of a trained model on labelled data.

    Example: [bold]layerforge evaluate runs/iris --data examples/data/iris.csv[/]
    """
    _set_threads(threads)

    def body():
        from .commands import evaluate_command

        results = evaluate_command(run_dir, data=data, batch_size=batch_size, allow_code=allow_code)
        if as_json:
            typer.echo(json.dumps(results))
            return
        from rich.table import Table

        table = Table("metric", "value", box=None, header_style="bold")
        for k, v in results.items():
            table.add_row(k, f"{v:.7g}")
        _console().print(table)

    _run(body)


@app.command()
def callbacks(
    name: Optional[str] = typer.Argument(None, metavar="[NAME]", help="Show one callback's parameters."),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON."),
):
    """The training callbacks (training.callbacks) and their parameters, with types and defaults.

    Example: [bold]layerforge callbacks EarlyStopping[/]
    """

    def body():
        from ..catalog import callback_catalogue, render_callbacks

        rows = callback_catalogue(name)
        if as_json:
            typer.echo(json.dumps(rows, indent=2, default=str))
        else:
            render_callbacks(rows, _console())

    _run(body)


@app.command("import")
def import_(
    source: Path = typer.Argument(..., help="A Keras model: model.to_json() JSON, a legacy HDF5 model file (.h5) or "
                                            "a Keras 3 .keras archive.", show_default=False),
    output: Path = typer.Option(..., "--output", "-o", help="Directory to write (config.yaml; with weights, a "
                                                            "complete run directory).", show_default=False),
    weights: Optional[Path] = typer.Option(None, "--weights", help="HDF5 weights written by save_weights, "
                                                                   "for a JSON SOURCE."),
    lambdas: Optional[list[str]] = typer.Option(None, "--lambda", metavar="NAME=EXPRESSION",
                                                help="A safe expression for the Lambda layer NAME (its Python "
                                                     "bytecode is never run), e.g. --lambda scale=\"x * 0.5\"."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
    backend: Optional[str] = typer.Option(None, "--backend", help="theano or tensorflow: the backend that trained "
                                                                  "a Keras 1 model whose file does not say."),
):
    """Bring a Keras 1, 2 or 3 model (architecture and weights) into layerforge.

    Example: [bold]layerforge import mnist_cnn.h5 -o runs/mnist_cnn[/], then
    [bold]layerforge predict runs/mnist_cnn --data digits.npy[/]; or
    [bold]layerforge import model.json --weights weights.h5 -o runs/imported[/]
    """

    def body():
        from ..interop.keras_import import import_keras, parse_lambda_options

        result = import_keras(source, output, weights=weights, lambdas=parse_lambda_options(lambdas), force=force,
                              backend=backend)
        version = result.keras_version or "version not recorded"
        what = "run directory" if result.with_weights else "config only, no weights"
        con = _console()
        con.print(f"[green]imported[/] {source} (Keras {version}, {result.backend or 'backend not recorded'}) -> "
                  f"{output} ({what}): "
                  f"{result.layers} layers, {result.total_params:,} parameters")
        for note in result.notes:
            con.print(f"  - {note}")
        if result.ignored:
            con.print(f"  {len(result.ignored)} setting(s) not carried over: see the header of {result.config_path}")

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
        from ..bench import render_bench, run_bench

        data = run_bench(config, list(overrides or []), batch_size=batch_size, steps=steps, allow_code=allow_code)
        if as_json:
            typer.echo(json.dumps(data, indent=2))
        else:
            render_bench(data, _console())

    _run(body)


@app.command()
def plot(
    runs: list[Path] = typer.Argument(..., help="Run directories written by `train` (several: one figure).",
                                      show_default=False),
    output: Path = typer.Option(Path("curves.png"), "--output", "-o", help="Picture to write (.png, .svg, .pdf)."),
    label: Optional[list[str]] = typer.Option(None, "--label", help="Name of each run in the legend (repeat)."),
):
    """Learning curves: loss and every metric per epoch, training vs validation, learning-rate changes marked.

    Example: [bold]layerforge plot runs/iris-a runs/iris-b -o curves.png[/]  (needs layerforge\\[plot])
    """

    def body():
        from ..errors import ConfigError, Problem
        from ..viz.curves import plot_runs

        if label and len(label) != len(runs):
            raise ConfigError(problems=[Problem(message=f"{len(label)} --label for {len(runs)} runs",
                                                path="--label", hint="give one --label per run, in order")])
        existed = Path(output).exists()
        written = plot_runs(runs, output, labels=list(label) if label else None)
        _console(stderr=True).print(f"wrote {written}" + (" (replacing the earlier file)" if existed else ""),
                                    highlight=False)

    _run(body)


@app.command()
def report(
    run_dir: Path = typer.Argument(..., help="A run directory written by `train`.", show_default=False),
    data: Optional[Path] = typer.Option(None, "--data", help="Labelled test data (default: data.test of the "
                                                              "config)."),
    output: Path = typer.Option(Path("report.html"), "--output", "-o", help="HTML file to write."),
    batch_size: int = typer.Option(256, "--batch-size", "-b", min=1, help="Samples per forward pass."),
    allow_code: bool = ALLOW_CODE_OPT,
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="Threads for BLAS and Numba."),
):
    """One self-contained HTML page: model summary, learning curves, test metrics, confusion matrix and
    per-class precision/recall/F1 (ROC and PR curves for two classes), or predicted vs actual for regression.

    Example: [bold]layerforge report runs/iris --data examples/data/iris.csv -o report.html[/]
    (needs layerforge\\[plot])
    """
    _set_threads(threads)

    def body():
        from ..viz.report import write_report

        existed = Path(output).exists()
        written = write_report(run_dir, data=data, output=output, batch_size=batch_size, allow_code=allow_code)
        _console(stderr=True).print(f"wrote {written}" + (" (replacing the earlier file)" if existed else ""),
                                    highlight=False)

    _run(body)


@app.command()
def sweep(
    config: Optional[Path] = typer.Argument(None, help="The model's YAML file (not needed with --resume).",
                                            show_default=False),
    overrides: Optional[list[str]] = OVERRIDES_ARG,
    space: Optional[Path] = typer.Option(None, "--space", "-s", help="The search space: config paths mapped to "
                                         "{loguniform|uniform|int: [low, high]} or {choice: [...]}."),
    trials: Optional[int] = typer.Option(None, "--trials", "-n", min=1,
                                         help="Trials the study should hold in the end (default 20)."),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Trials run at once (local processes, or Dask "
                                                            "workers for --dask local); the cores are divided."),
    storage: Optional[str] = typer.Option(None, "--storage", help="Optuna storage URL (default: an SQLite file "
                                          "in the sweep directory), e.g. postgresql://user@host/db: several "
                                          "machines can then join one study."),
    dask: Optional[str] = typer.Option(None, "--dask", help="Run the trials on the Dask cluster at this scheduler "
                                       "address (tcp://host:8786), or `local` for a LocalCluster of --jobs workers."),
    pruner: str = typer.Option("median", "--pruner", help="Stop poor trials early from their per-epoch values: "
                               "median, hyperband, halving or none."),
    sampler: str = typer.Option("tpe", "--sampler", help="tpe (Optuna's TPE) or random."),
    metric: Optional[str] = typer.Option(None, "--metric", help="What a trial is judged by, its best epoch's value "
                                         "(default val_loss, or loss without validation data)."),
    direction: Optional[str] = typer.Option(None, "--direction", help="minimize or maximize (default: maximize "
                                            "for accuracy-like metrics)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Sweep directory to write (default "
                                          "sweeps/<name>-<time>)."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the sweep in this directory (after a "
                                          "kill, or with a larger --trials)."),
    study_name: Optional[str] = typer.Option(None, "--study-name", help="Study name in the storage (default: the "
                                             "sweep directory's name)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the sampler."),
    allow_code: bool = ALLOW_CODE_OPT,
):
    """Hyperparameter sweep on Optuna: each trial is a run directory under the sweep directory; the best config
    is written as YAML. Needs the extra layerforge[sweep].

    Example: [bold]layerforge sweep configs/iris.yaml --space space.yaml --trials 20 --jobs 2[/]
    """

    def body():
        from ..errors import ConfigError, Problem

        for value, allowed, flag in ((pruner, ("median", "hyperband", "halving", "none"), "--pruner"),
                                     (sampler, ("tpe", "random"), "--sampler"),
                                     (direction, ("minimize", "maximize", None), "--direction")):
            if value not in allowed:
                raise ConfigError(problems=[Problem(message=f"{flag} {value} is not known", file="<command line>",
                                                    expected=", ".join(a for a in allowed if a))])
        from ..sweep.command import sweep_command

        sweep_command(config, space=space, overrides=list(overrides or []), trials=trials, jobs=jobs,
                      storage=storage, dask=dask, pruner=pruner, sampler=sampler, metric=metric,
                      direction=direction, output=output, resume=resume, study_name=study_name, seed=seed,
                      allow_code=allow_code, console=_console())

    _run(body)


@app.command()
def serve(
    run_dir: Path = typer.Argument(..., help="A run directory written by `train`.", show_default=False),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8000, "--port", "-p", min=0, max=65535, help="TCP port."),
    workers: int = typer.Option(1, "--workers", "-w", min=1, help="Server processes (each loads the model)."),
    max_batch: int = typer.Option(64, "--max-batch", min=1, help="Most rows merged into one forward pass."),
    max_wait_ms: float = typer.Option(5.0, "--max-wait-ms", min=0.0,
                                      help="Longest a forming batch waits for requests still being read."),
    max_rows: int = typer.Option(10_000, "--max-rows", min=1, help="Most rows per request (more: 413)."),
    max_body_mb: float = typer.Option(16.0, "--max-body-mb", min=0.0, help="Most megabytes (MiB) per request "
                                                                           "body (more: 413)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="Threads for BLAS and Numba, per "
                                          "worker (default: the cores shared out over the workers)."),
    access_log: bool = typer.Option(False, "--access-log", help="Log every request (costs throughput)."),
    shutdown_timeout: float = typer.Option(30.0, "--shutdown-timeout", min=0.0,
                                           help="Seconds SIGTERM waits for requests in flight."),
    allow_code: bool = ALLOW_CODE_OPT,
):
    """Serve a trained model over HTTP: POST /predict (JSON, CSV, NPY), GET /health, /metadata, /docs.

    Needs the serve extra: pip install 'layerforge\\[serve]'.

    Example: [bold]layerforge serve runs/iris --port 8000[/], then
    [bold]curl -d '[[5.1, 3.5, 1.4, 0.2]]' -H 'Content-Type: application/json' localhost:8000/predict[/]
    """
    _set_threads(threads)

    def body():
        from ..serve import require_serve_dependencies

        require_serve_dependencies()
        from ..serve.app import ServeSettings
        from ..serve.server import serve as run_server

        run_server(ServeSettings(run=str(run_dir), host=host, port=port, workers=workers, max_batch=max_batch,
                                 max_wait_ms=max_wait_ms, max_rows=max_rows,
                                 max_body_bytes=int(max_body_mb * 1024 * 1024), threads=threads,
                                 allow_code=allow_code, access_log=access_log, shutdown_timeout=shutdown_timeout))

    _run(body)


@app.command("export")
def export_cmd(
    run_dir: Path = typer.Argument(..., help="A run directory written by `train`.", show_default=False),
    fmt: str = typer.Option(..., "--format", "-f", help="onnx or keras (a Keras 3 .keras archive).",
                            show_default=False),
    output: Path = typer.Option(..., "--output", "-o", help="File to write (.onnx, or .keras for Keras).",
                                show_default=False),
    opset: Optional[int] = typer.Option(None, "--opset", help="ONNX opset version (default 17)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", "-b", min=1,
                                             help="Fix the batch axis to N (default: variable)."),
    force: bool = typer.Option(False, "--force", help="Replace OUTPUT if it exists."),
    allow_code: bool = ALLOW_CODE_OPT,
):
    """Export a trained model to ONNX or to Keras 3 (.keras), to run it outside layerforge.

    A layer the format cannot express is named in an error (exit code 2); nothing is dropped silently.

    Example: [bold]layerforge export runs/iris --format onnx -o iris.onnx[/]
    """

    def body():
        from ..api import export, load

        model = load(run_dir, allow_code=allow_code)
        path = export(model, output, fmt, opset=opset, batch_size=batch_size, overwrite=force)
        _console(stderr=True).print(f"wrote {path} ({fmt.lower()})", highlight=False)

    _run(body)


def main():
    from ..engine import startup

    startup.start()  # before anything loads numpy: the OpenBLAS setting only counts then (engine/startup.py)
    app(prog_name="layerforge")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
