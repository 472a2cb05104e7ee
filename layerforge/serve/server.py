"""Running the app under uvicorn: one process, or ``--workers`` processes sharing the port.

uvicorn handles SIGTERM/SIGINT gracefully: it stops accepting connections, lets the requests in flight finish
(up to ``shutdown_timeout`` seconds), then runs the app's shutdown, which drains the batcher.
"""

from __future__ import annotations

import errno
import socket

from ..errors import Problem, UserError
from .app import ServeSettings, app_from_environment, create_app, settings_to_environment


def check_address(host: str, port: int) -> None:
    """A clear message now, before the run is loaded, when the address cannot be listened on."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no obstacle
        try:
            s.bind((host, port))
        except OSError as exc:
            why = "is in use" if exc.errno == errno.EADDRINUSE else f"cannot be listened on ({exc.strerror or exc})"
            raise UserError(problems=[Problem(message=f"{host}:{port} {why}",
                                              hint="choose another --port (or stop the server using it)"
                                              if exc.errno == errno.EADDRINUSE else
                                              "check --host: an address of this machine, 127.0.0.1 or 0.0.0.0")]
                            ) from None


def serve(settings: ServeSettings) -> None:
    """Serve ``settings.run`` until SIGTERM/SIGINT (blocking)."""
    import uvicorn

    check_address(settings.host, settings.port)

    common = dict(host=settings.host, port=settings.port, access_log=settings.access_log, log_level="info",
                  timeout_graceful_shutdown=settings.shutdown_timeout, backlog=2048, server_header=False)
    if settings.workers > 1:
        from ..io.rundir import read_run
        from ..kernels.threads import cpu_count

        read_run(settings.run)  # a missing or damaged run is reported once, here, not by every worker
        if settings.threads is None:  # the cores shared out, so the workers' thread pools do not fight
            settings.threads = max(1, cpu_count() // settings.workers)
        settings_to_environment(settings)  # each worker builds its own app (and loads the run) from these
        uvicorn.run(f"{app_from_environment.__module__}:{app_from_environment.__name__}", factory=True,
                    workers=settings.workers, **common)
        return
    app = create_app(settings)  # the run is loaded (and its errors reported) before the port opens
    uvicorn.run(app, **common)
