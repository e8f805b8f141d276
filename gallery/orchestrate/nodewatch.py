"""A watch on the node a Ray driver runs on (see :mod:`gallery.orchestrate.cluster`).

When the driver's own node dies (its raylet killed, or the cluster marking it dead after
missed health checks), Ray ends the driver from native code at its next touch of the
node, with no word. The watch notices first, from a thread of its own, so the build can
stop in one line that says what happened.
"""

from __future__ import annotations

import threading
import time

from ..errors import GalleryError


class NodeDied(GalleryError):
    """The node the driver runs on died under the build: nothing on it can run again."""

    def __init__(self, reason: str):
        super().__init__(f"the Ray cluster's node died under the build ({reason}); finished tiles are cached "
                         "and the next run resumes from them")


WATCH_EVERY = 0.25  # seconds between looks at the node's own processes
ASK_EVERY = 1.0  # seconds between questions to the cluster's GCS about the node
GCS_SILENCE = 30.0  # seconds the GCS may leave a question unanswered; Ray gives up on it at 60


class NodeWatch:
    """Watches the node the driver runs on, from a thread of its own, and says why it died.

    A driver whose raylet is gone is ended by Ray itself (``_exit(1)``, from native code,
    no Python exception and no message) the next time it touches the node's object store:
    starting a worker in place of the dead ones, or fetching a result. The workers on the
    node die with their raylet at once, but the cluster reports it only when its health
    checks give up (about 15 s here), and that report is what sends the build to start
    new workers. So the watch looks at the node's processes where this build started them
    (a local Ray: its raylet and GCS, every 0.25 s) and asks the GCS whether it still
    holds the node alive (every second: a node marked dead after missed heartbeats, on any
    cluster); the driver consults :attr:`died` before every call that touches the node.
    """

    def __init__(self, ray):
        self._ray = ray
        self.node = ray.get_runtime_context().get_node_id()
        self.processes = _own_processes()
        self.died: str | None = None
        self._asking_since: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="ray-node-watch", daemon=True)
        self._thread.start()

    def check(self) -> None:
        """Raise :class:`NodeDied` once the node is known dead, or the GCS has gone silent."""
        asking = self._asking_since
        if self.died is None and asking is not None and time.monotonic() - asking > GCS_SILENCE:
            self.died = f"its GCS left a question unanswered for {GCS_SILENCE:.0f} s"
        if self.died is not None:
            raise NodeDied(self.died)

    def look(self) -> None:
        """Look at the node now, not at the watch's next turn, and :meth:`check`."""
        self.died = self.died or self._ended() or self._ask()
        self.check()

    def stop(self) -> None:
        """End the watch before Ray shuts down, so it asks nothing of a Ray that is gone."""
        self._stop.set()
        self._thread.join(timeout=ASK_EVERY + 1)

    def end_processes(self) -> None:
        """Kill the raylet and GCS this build started, if they still run: the node is dead
        to the build, and nothing it holds can be used again."""
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)

    def _watch(self) -> None:
        asked = 0.0
        while self.died is None and not self._stop.wait(WATCH_EVERY):
            self.died = self._ended()
            if self.died is None and time.monotonic() - asked >= ASK_EVERY:
                asked = time.monotonic()
                self.died = self._ask()

    def _ended(self) -> str | None:
        for name, process in self.processes.items():
            code = process.poll()
            if code is not None:
                how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
                return f"its {name}, pid {process.pid}, {how}"
        return None

    def _ask(self) -> str | None:
        self._asking_since = time.monotonic()
        try:
            nodes = self._ray.nodes()
        except Exception as exc:  # noqa: BLE001 - any failure to answer is the GCS's silence
            return f"its GCS did not answer: {_first_line(exc)}"
        finally:
            self._asking_since = None
        mine = [n for n in nodes if n.get("NodeID") == self.node]
        if mine and not mine[0].get("Alive", True):
            said = str(mine[0].get("DeathReasonMessage") or "").strip()
            return "the cluster marked it dead" + (f": {_first_line(said)}" if said else "")
        return None


def _own_processes() -> dict:
    """``{name: Popen}`` of the raylet and GCS this driver started (a local Ray), or ``{}``
    where it joined a cluster whose processes belong to others. Ray keeps them on a private
    object; without it the watch asks the GCS alone."""
    try:
        from ray._private import worker

        started = worker._global_node.all_processes
        return {name: started[name][0].process for name in ("raylet", "gcs_server") if started.get(name)}
    except Exception:  # noqa: BLE001 - a Ray that keeps them elsewhere
        return {}


def _first_line(value) -> str:
    text = str(value).strip()
    return text.splitlines()[0] if text else type(value).__name__
