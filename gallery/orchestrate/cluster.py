"""Units on Ray (https://docs.ray.io): one worker per GPU, or per slice of CPUs, on any machines.

Each worker is a Ray actor that loads the model once and keeps its compiled loops for
every unit it runs. The model reaches workers through Ray's object store (a model file's
own bytes, or an application's name and weights), so workers need no shared file system;
they return entries' bytes and metadata, and the driver alone writes the cache and the
site. When a worker dies mid-unit, its units go back to the queue, for the other workers
and for a new worker started in its place, so the build still completes with every tile.
A killed driver resumes from the cache, as ever. When the driver's own node dies (its
raylet killed, or the cluster marking it dead after missed health checks), Ray ends the
driver from its native code at its next touch of the node, with no word; a watch on the
node stops the build first, in one line (:class:`NodeWatch`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import tempfile
import threading
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Iterator

from ..config import worker_threads
from ..console import log, warn
from ..errors import GalleryError
from .nodewatch import WATCH_EVERY, NodeWatch
from .units import Result, Task

IN_FLIGHT = 2  # units queued on each worker, so the next starts the moment one ends
REPLACEMENTS = 4  # workers the driver starts in place of dead ones, per worker it began with


@dataclass(frozen=True)
class ModelSource:
    """A model as bytes: a model file's own, or an application's name with its weights."""

    kind: str  # "file" or "application"
    name: str  # the file's name (its suffix tells Keras the format), or the application's constructor
    data: bytes
    safe_mode: bool = True

    @classmethod
    def of(cls, spec, model, safe_mode: bool = True) -> "ModelSource":
        from ..model import loading

        text = str(spec)
        if loading.is_model_file(text):
            return cls("file", Path(text).name, Path(text).read_bytes(), safe_mode)
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "model.weights.h5"
            model.save_weights(path)
            return cls("application", loading.application_name(text), path.read_bytes(), safe_mode)

    def load(self):
        import keras

        from ..model import loading

        sweep_model_copies()
        with tempfile.TemporaryDirectory(prefix=f"{MODEL_COPY}{os.getpid()}-") as folder:
            path = Path(folder) / (self.name if self.kind == "file" else "model.weights.h5")
            path.write_bytes(self.data)
            if self.kind == "file":
                return loading.load_model(str(path), safe_mode=self.safe_mode)
            model = getattr(keras.applications, self.name)(weights=None)
            model.load_weights(path)
            return model


MODEL_COPY = "cnn-gallery-model-"  # + the pid of the worker that wrote it, and a random part


def sweep_model_copies(folder: str | None = None) -> int:
    """Remove the model copies that workers killed while loading left in the temporary
    folder (hundreds of MB each for VGG16): those whose worker's pid is gone."""
    removed = 0
    for entry in os.scandir(folder or tempfile.gettempdir()):
        pid = entry.name[len(MODEL_COPY):].split("-", 1)[0]
        if not (entry.name.startswith(MODEL_COPY) and pid.isdigit() and entry.is_dir(follow_symlinks=False)):
            continue
        try:
            os.kill(int(pid), 0)
            continue  # its worker still runs
        except ProcessLookupError:
            pass
        except PermissionError:
            continue  # another user's process
        shutil.rmtree(entry.path, ignore_errors=True)
        removed += 1
    return removed


class _Worker:
    """The Ray actor: one model, one :class:`~gallery.orchestrate.work.Worker`, many units."""

    def __init__(self, source: list, job, threads: int | None):
        import ray

        from ..model import grad, loading
        from .work import Worker

        if threads:
            grad.limit_threads(threads)  # before the backend runs anything
        model = ray.get(source[0]).load()  # a reference in a list: fetched here, not by Ray on the way
        found = loading.fingerprint(model)
        if found != job.fingerprint:
            raise GalleryError(f"the worker's model has fingerprint {found[:12]}, not the driver's "
                               f"{job.fingerprint[:12]}: it did not load the same model")
        self.worker = Worker(model, job)

    def run(self, task: Task) -> Result:
        return self.worker.run(task)

    def ready(self) -> bool:
        """Answers once the model is loaded: the driver may let go of its copy."""
        return True


JOIN_TIMEOUT = 10.0  # seconds to wait for a cluster's head to answer at all


def check_reachable(address: str) -> None:
    """Fail in one line, within seconds, when nothing listens at a ``HOST:PORT`` or
    ``ray://HOST:PORT`` address: Ray itself retries for about a quarter of an hour,
    printing a warning each time. ``auto`` is Ray's to resolve, and it fails fast."""
    text = address.removeprefix("ray://")
    host, _, port = text.rpartition(":")
    if address == "auto" or not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=JOIN_TIMEOUT).close()
    except OSError as exc:
        raise GalleryError(f"cannot join Ray at {address!r}: nothing answers at {host}:{port} "
                           f"({exc.strerror or type(exc).__name__}); start the cluster (ray start --head) "
                           "or check --ray-address") from None


@contextlib.contextmanager
def _own_sigterm():
    """Keep the build's own SIGTERM handling across ``ray.init``, which installs a handler
    that ends the driver in a native stack dump and exit 134: a Ray build then stops on
    SIGTERM as a local one does."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = signal.getsignal(signal.SIGTERM)
    saved = saved if saved is not None else signal.SIG_DFL
    try:
        yield
    except SystemExit as exc:
        if exc.code != signal.SIGTERM:
            raise
        # SIGTERM came while Ray started, and Ray's handler turned it into exit(15):
        # the signal goes again, to the build's own handling.
        signal.signal(signal.SIGTERM, saved)
        os.kill(os.getpid(), signal.SIGTERM)
        raise
    finally:
        signal.signal(signal.SIGTERM, saved)


def portable(task: Task) -> Task:
    """``task`` as it travels to a worker: photos carry their files' bytes, not local paths."""
    return replace(task, unit=task.unit.portable())


class RayExecutor:
    """Runs tasks on Ray workers and yields ``(task, result)`` as each finishes."""

    name = "ray"

    def __init__(self, job, source: ModelSource, address: str | None = None, worker_cpus: int | None = None,
                 workers: int | None = None, debug: bool = False):
        """``workers`` caps how many start (default: as many as the cluster has room for);
        ``debug`` lets Ray and its workers print their own lines, as a local ``--debug`` does."""
        try:
            import ray
        except ImportError:
            raise GalleryError("--executor ray needs Ray: pip install 'cnn-gallery[ray]'") from None
        import keras

        self.ray = ray
        backend = keras.backend.backend()
        env = {"KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
        self.owned = not ray.is_initialized()  # a Ray this build started (or joined) it also leaves
        if self.owned:
            # Joining a cluster, the package travels with the job, so the other machines need
            # only the dependencies; a local Ray's workers import it from this environment.
            package = {"py_modules": [str(Path(__file__).resolve().parents[1])]} if address else {}
            if address:
                check_reachable(address)
            try:
                # "local" starts a Ray of the build's own: without it, Ray joins whatever
                # RAY_ADDRESS or a running (or dead) cluster's session file names, and then
                # refuses num_cpus.
                with _own_sigterm():
                    # Workers' start-up lines (CUDA, absl) and Ray's notices, in colour even
                    # into a file, bury the build's own; errors still arrive as exceptions.
                    ray.init(address=address or "local", include_dashboard=False,
                             logging_level="WARNING" if debug else "ERROR", log_to_driver=debug,
                             runtime_env=package, **({} if address else {"num_cpus": os.cpu_count()}))
            except Exception as exc:
                raise GalleryError(f"cannot start or join Ray at {address or 'a local cluster'!r}: {exc}") from exc
        resources = ray.cluster_resources()
        gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 1))
        if gpus:
            self.threads, count, options = None, gpus, {"num_gpus": 1, "num_cpus": 1}
        else:
            self.threads = worker_threads(worker_cpus, cpus)
            count, options = max(1, cpus // self.threads), {"num_cpus": self.threads}
        count = min(count, workers or count)
        # No restarts by Ray: a dead worker's units are requeued here, and a new worker started.
        self._actor = ray.remote(max_restarts=0, **options)(_Worker).options(runtime_env={"env_vars": env})
        self._model, self._source, self._job = source, None, job
        self._loading: set = set()  # workers that may still need the model
        self._unasked: list = []  # workers started, not yet asked whether they are ready
        self.workers = count
        self.watch = NodeWatch(ray)
        self.actors = [self._start() for _ in range(count)]
        self._spares = REPLACEMENTS * count
        each = "one GPU" if gpus else f"{self.threads} CPU" + "s" * (self.threads > 1)
        log(f"  Ray: {count} worker{'s' * (count > 1)}, each {each} "
            f"({int(cpus)} CPUs and {gpus} GPUs in the cluster)")

    def _start(self):
        self.watch.check()  # a new worker's model comes through the node's object store
        if self._source is None:
            self._source = self.ray.put(self._model)
        actor = self._actor.remote([self._source], self._job, self.threads)
        self._loading.add(actor)
        self._unasked.append(actor)
        return actor

    def _loaded(self, actor) -> None:
        """Let go of the model in the object store once every worker has it. An object the
        driver put there, lost with a node the cluster marks dead, makes Ray try to restore
        it and end the driver when it cannot: held no longer than needed, the watch is
        first to tell."""
        self._loading.discard(actor)
        if not self._loading:
            self._source = None

    def run(self, tasks: Iterable[Task], progress) -> Iterator[tuple[Task, Result]]:
        queue = deque(tasks)
        running: dict = {}  # object ref -> (task, actor); a task of None is a worker's ready()
        load = {id(actor): 0 for actor in self.actors}
        while queue or any(task is not None for task, _ in running.values()):
            running.update((actor.ready.remote(), (None, actor)) for actor in self._unasked)
            self._unasked.clear()
            for actor in list(self.actors):
                while queue and load[id(actor)] < IN_FLIGHT:
                    self.watch.check()  # a photo unit's bytes go through the node's object store
                    task = queue.popleft()
                    running[actor.run.remote(portable(task))] = (task, actor)
                    load[id(actor)] += 1
            ready = self._wait(list(running))
            task, actor = running.pop(ready)
            load[id(actor)] -= task is not None
            try:
                self.watch.check()  # a large result is fetched from the node's object store
                result = self.ray.get(ready)
                self._loaded(actor)
            except self.ray.exceptions.RayActorError as exc:
                if task is not None:
                    queue.appendleft(task)  # to the other workers, or to the one that replaces this
                self._replace(actor, load, exc)
                continue
            except (self.ray.exceptions.ObjectLostError, self.ray.exceptions.NodeDiedError):
                self.watch.look()  # this node's loss stops the build in one line
                if task is not None:  # another node's: the unit runs again
                    queue.appendleft(task)
                continue
            except self.ray.exceptions.RayTaskError as exc:
                cause = getattr(exc, "cause", None)
                if isinstance(cause, GalleryError):  # the user's to fix: one line, as in a local build
                    raise GalleryError(str(cause)) from exc
                raise RuntimeError(f"{task.unit.name} failed on a Ray worker: {exc}") from exc
            if task is None:
                continue
            progress.finish(task.uid, result.seconds)
            yield task, result

    def _wait(self, refs: list):
        """The first of ``refs`` to finish, looking at the node while none has."""
        while True:
            self.watch.check()
            ready, _ = self.ray.wait(refs, num_returns=1, timeout=WATCH_EVERY)
            if ready:
                return ready[0]

    def _replace(self, actor, load: dict, exc) -> None:
        # The cluster reports the workers of a dead node before (or as) it reports the node:
        # ask now, not at the watch's next turn, before a new worker is started on it.
        self.watch.look()
        if actor not in self.actors:  # its other unit in flight, failing after it
            return
        self.actors.remove(actor)
        self._loaded(actor)  # dead: it needs the model no more
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if not self._spares:
            if not self.actors:
                raise GalleryError(f"every Ray worker died, the last with: {reason}; finished tiles are cached")
            warn(f"a Ray worker died ({reason}); going on with {len(self.actors)}")
            return
        self._spares -= 1
        warn(f"a Ray worker died ({reason}); its units go back to the queue and a new worker starts")
        fresh = self._start()
        self.actors.append(fresh)
        load[id(fresh)] = 0

    def close(self) -> None:
        self.watch.stop()
        if self.watch.died is None:
            for actor in self.actors:
                self.ray.kill(actor)
        else:
            # Ray's shutdown says goodbye to the raylet and the GCS and waits for their
            # answers: one that is stopped rather than dead (a node marked dead while it
            # hung, a GCS gone silent) never answers.
            self.watch.end_processes()
        if self.owned:
            self.ray.shutdown()
        sweep_model_copies()  # what workers on this machine killed mid-load left
