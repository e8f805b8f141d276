"""Where units run: in this process (``local``), or on Ray workers (``ray``, see :mod:`.cluster`).

An executor takes tasks in order and yields ``(task, result)`` as they finish; it never
touches the cache or the site, which the driver alone writes.
"""

from __future__ import annotations

from typing import Iterable, Iterator

from .units import Result, Task
from .work import Worker


class LocalExecutor:
    """One worker in this process, on the model the driver loaded: today's single-process build."""

    name = "local"
    workers = 1

    def __init__(self, model, job):
        self.worker = Worker(model, job)

    def run(self, tasks: Iterable[Task], progress) -> Iterator[tuple[Task, Result]]:
        for task in tasks:
            progress.start(task.uid, task.unit.name)
            result = self.worker.run(task, on_step=task.unit.stepper(task.uid, progress))
            progress.finish(task.uid, result.seconds)
            yield task, result

    def close(self) -> None:
        self.worker.close()


def executor(name: str, model, job, source=None, address: str | None = None, worker_cpus: int | None = None,
             debug: bool = False):
    """The executor a build asked for; ``source`` says how remote workers get the model."""
    if name == "local":
        return LocalExecutor(model, job)
    from .cluster import RayExecutor

    return RayExecutor(job, source, address=address, worker_cpus=worker_cpus, debug=debug)
