"""`layerforge train CONFIG --distributed` under mpirun: one process per rank, Horovod's data parallelism."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..errors import CheckpointError, ConfigError, Problem, RunFailed, UserError


def _agree(comm, failure: BaseException | None) -> None:
    """Every rank learns whether any rank failed in a step that may fail on some ranks only (reading files), so
    all stop together instead of leaving the others waiting in a collective call; one rank reports it."""
    failed = comm.allgather(failure is not None)
    if not any(failed):
        return
    if failure is not None and failed.index(True) == comm.Get_rank():
        raise failure
    raise SystemExit(getattr(failure, "exit_code", 2) if failure is not None else 2)


def _abort(comm, exc: BaseException, console) -> None:
    """A failure inside the fit loop on one rank: the others wait in an Allreduce, so abort the whole job."""
    code = getattr(exc, "exit_code", 1)
    text = exc.render_plain() if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
    console.print(f"[bold red]rank {comm.Get_rank()}:[/] {text}", highlight=False)
    comm.Abort(code)


def distributed_train_command(config: Path, *, overrides, output, resume, data, validation_data, quiet, allow_code,
                              threads, sync_batchnorm: bool, console, init_from: Path | None = None) -> None:
    from .mpi import DataParallel, ranks_on_this_host, world

    comm = world()
    rank, size = comm.Get_rank(), comm.Get_size()
    if threads is None:  # the ranks on one machine share its cores: no oversubscription
        from ..kernels.threads import cpu_count, set_threads

        set_threads(max(1, cpu_count() // ranks_on_this_host(comm)))
    from ..api import Model
    from ..cli import commands as runner
    from ..config import load_config
    from ..graph import build_graph

    failure, spec, graph, run = None, None, None, None
    try:
        spec = load_config(config, overrides, allow_code=allow_code)
        graph = build_graph(spec)
        if rank == 0 and resume is not None:
            from ..io.rundir import read_run

            run = read_run(resume)
            diff = runner._same_model(run["config"], spec.canonical_dict())
            if diff:
                raise CheckpointError(problems=[Problem(
                    message=f"the model in {config} differs from the one saved in {resume} ({', '.join(diff)})",
                    file=str(resume), hint="resume with the same model config; only training settings may change")])
        run_dir = Path(output) if output else (Path(resume) if resume else None)
        if rank == 0 and run_dir is not None:
            runner._check_output_dir(run_dir, Path(resume) if resume else None)
    except UserError as exc:
        failure = exc
    _agree(comm, failure)
    # rank 0 decides the seed, the run directory and the resumed state; the others receive them (no shared
    # file system needed: only rank 0 reads and writes the run directory)
    seed = spec.config.seed
    if seed is None:
        import random

        seed = random.SystemRandom().randrange(2**31)
    if run is not None:
        seed = (run.get("state") or {}).get("seed", seed)
    if run_dir is None:
        run_dir = runner.default_run_dir(spec.config.name)
    seed, run_dir, run = comm.bcast((seed, str(run_dir), run) if rank == 0 else None, root=0)
    run_dir = Path(run_dir)
    model = Model(spec, graph, seed=seed)
    model.overrides, model.config_file = list(overrides), str(config)
    model.trainer.run_dir = run_dir
    if rank == 0:  # callbacks' `verbose: 1` lines come from rank 0 alone, as its progress bar does
        model.trainer.say = lambda message: console.print(message, highlight=False)
    else:
        model.trainer.say = _say_nothing
    if run is not None:
        model.restore(run)
        done = model.trainer.epoch
        if done >= spec.config.training.epochs:
            raise ConfigError(problems=[Problem(
                message=f"the run already has {done} epochs and the config asks for "
                        f"{spec.config.training.epochs}", file=str(resume),
                hint=f"raise the total, e.g. `mpirun -n {size} layerforge train {config} --distributed --resume "
                     f"{resume} training.epochs={done + 10}`")])
    # fine-tuning (--init-from / training.init_from): every rank reads the run; rank 0's weights are broadcast anyway
    runner._warm_start(model, spec, init_from, resume, config, console, quiet or rank != 0)
    trainer = model.trainer
    parallel = DataParallel(comm, trainer, seed=seed)
    trainer.parallel = parallel
    if sync_batchnorm:
        from .syncbn import synchronise_batchnorm

        synchronise_batchnorm(model.compiled, parallel)
    parallel.broadcast_weights()

    def save(trainer, epoch):
        if rank == 0 and np.isfinite(trainer.history[-1]["loss"]):  # a NaN epoch never replaces the last good one
            model.save(run_dir, overwrite=True)

    cfg = spec.config.training
    if rank != 0:  # files are rank 0's to write; the other ranks keep the callbacks that decide (alike)
        writers = ("ModelCheckpoint", "CSVLogger")
        cfg.callbacks[:] = [c for c in cfg.callbacks if getattr(c, "type", None) not in writers]
    shown = rank == 0 and not quiet
    if shown:
        console.print(f"[bold]{spec.config.name}[/]: {graph.total_params:,} parameters, {len(graph.nodes)} layers, "
                      f"seed {seed}, {size} ranks sharing each global batch of {cfg.batch_size}"
                      + (", BatchNormalization synchronised" if sync_batchnorm else "")
                      + (f", resuming after epoch {trainer.epoch}" if run is not None else ""), highlight=False)
    started = time.perf_counter()
    try:
        history = model.fit(data=data, validation_data=validation_data, verbose=1 if shown else 0,
                            console=console if rank == 0 else None, on_epoch_end=save, resume=run is not None)
    except KeyboardInterrupt:
        if rank == 0 and trainer.epoch:
            console.print(f"[yellow]interrupted[/]: {run_dir} holds epoch {trainer.epoch}; continue with "
                          f"`mpirun -n {size} layerforge train {config} --distributed --resume {run_dir}`")
        raise
    except Exception as exc:
        if size == 1:
            raise
        _abort(comm, exc, console)
    if not history.epoch:
        raise RunFailed("no epoch ran")
    if trainer.nan_at is not None:
        raise RunFailed("the loss became NaN or infinite; lower the learning rate or check the data"
                        + (f" ({run_dir} keeps the last good epoch)" if rank == 0 and run_dir.exists() else ""))
    drift = parallel.check_identical()
    if rank == 0:
        model.save(run_dir, overwrite=True)  # after callbacks such as EarlyStopping(restore_best_weights)
        elapsed = time.perf_counter() - started
        from ..engine.progress import format_logs

        for note in trainer.notes:
            console.print(f"[dim]{note}[/]", highlight=False)
        share = parallel.allreduce_seconds / elapsed if elapsed > 0 else 0.0
        last = {k: v[-1] for k, v in history.history.items()}
        console.print(f"[green]done[/] {len(history.epoch)} epochs in {elapsed:.1f}s on {size} ranks "
                      f"(gradient Allreduce {100 * share:.1f}% of the time)  {format_logs(last)}",
                      highlight=False)
        if drift > 0:
            console.print(f"[yellow]warning:[/] the ranks' weights differ by up to {drift:.3g}", highlight=False)
        console.print(f"run saved to [bold]{run_dir}[/]  (predict: layerforge predict {run_dir} --data FILE)",
                      highlight=False)


def _say_nothing(message: str) -> None:
    """Where ranks other than 0 send what callbacks say: every rank decides alike, rank 0 prints it once."""
