"""Where trials run: local worker processes (``--jobs``) or a Dask cluster (``--dask ADDRESS``, or ``--dask local``
for a LocalCluster on this machine). Each task runs one trial (``objective.run_trial``) against the shared study
storage, so the study, not the executor, holds the state; results stream back as trials finish."""

from __future__ import annotations

from ..errors import ConfigError, Problem


def _init_worker(threads: int) -> None:
    import signal

    # Ctrl-C reaches the whole process group: the sweep process handles it (and ends the workers), so a worker
    # is never interrupted half-way through an import and then handed the next trial
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # a fresh (spawned) interpreter: the thread counts are set before numpy's BLAS and Numba load
    from ..kernels.threads import set_threads

    set_threads(threads)


def run_local(jobs_list: list[dict], processes: int, threads: int):
    """Yield each trial's result as it finishes, running ``processes`` trials at a time."""
    from .objective import run_trial

    if processes == 1:  # in this process: no start-up cost, and Ctrl-C behaves as in `train`
        for job in jobs_list:
            yield run_trial(job)
        return
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")  # never fork a process that holds Numba's threads
    pool = ctx.Pool(processes, initializer=_init_worker, initargs=(threads,))
    try:
        # one trial per task, handed out as workers free up, so the trials on this machine never exceed --jobs
        yield from pool.imap_unordered(run_trial, jobs_list, chunksize=1)
        pool.close()
    except BaseException:
        pool.terminate()  # Ctrl-C or an error: the running trials stay RUNNING and `--resume` runs them again
        raise
    finally:
        pool.join()


def dask_client(address: str, processes: int):
    """A client of the cluster at ``address``, or of a LocalCluster of ``processes`` workers for ``local``."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise ConfigError(problems=[Problem(message=f"--dask needs dask.distributed, which cannot be imported "
                                                    f"({exc})", hint='pip install "layerforge[sweep]"')]) from None
    if address == "local":
        import logging

        cluster = LocalCluster(n_workers=processes, threads_per_worker=1, processes=True, dashboard_address=None,
                               silence_logs=logging.ERROR)
        return Client(cluster), cluster
    try:
        return Client(address, timeout=30), None
    except OSError as exc:
        raise ConfigError(problems=[Problem(message=f"cannot reach the Dask scheduler at {address}: {exc}",
                                            hint="start one with `dask scheduler` and workers with "
                                                 "`dask worker ADDRESS --nthreads 1`, or use --dask local")]) \
            from None


def threads_by_worker(client) -> dict[str, int]:
    """Each worker's thread count: its machine's cores divided by the trials that run there at once."""
    workers = client.scheduler_info(n_workers=-1)["workers"] if _takes_n_workers(client) else \
        client.scheduler_info()["workers"]
    cores = client.run(_cores)
    slots: dict[str, int] = {}
    for info in workers.values():
        slots[info["host"]] = slots.get(info["host"], 0) + int(info.get("nthreads", 1))
    return {addr: max(1, int(cores.get(addr, 1)) // slots[info["host"]]) for addr, info in workers.items()}


def _takes_n_workers(client) -> bool:
    import inspect

    return "n_workers" in inspect.signature(client.scheduler_info).parameters


def _cores() -> int:
    from ..kernels.threads import cpu_count

    return cpu_count()


def run_dask(jobs_list: list[dict], client):
    from distributed import as_completed

    from .objective import run_trial

    by_worker = threads_by_worker(client)
    futures = [client.submit(run_trial, dict(job, threads_by_worker=by_worker), pure=False) for job in jobs_list]
    try:
        for future in as_completed(futures):
            yield future.result()
    finally:
        for future in futures:
            future.cancel()
