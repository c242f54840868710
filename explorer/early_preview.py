"""The preview of a big sysfs tree, read while the app's modules import (``pci-explorer tui``).

Reading a preview is Python work (listing and sorting the names of 100,000 functions and
groups, then reading a few hundred devices). In a thread it takes turns with the import of
Textual and the app on the one interpreter lock, so the first screen waited for both, one
after the other. Here a child process, forked before the app is imported (no other thread
runs yet), reads it on another CPU and hands the topology back pickled through a pipe.
Where there is no fork, or the child fails, the preview is read in a thread as before, and
a bad SOURCE raises there as ``sources.preview_source`` raises.

Nothing here imports textual: the command line starts it before the app exists.
"""

from __future__ import annotations

import os
import pickle
import threading
from typing import Any


class EarlyPreview:
    """``sources.preview_source(spec)`` started now; ``result()`` waits for it (and raises
    what it raised)."""

    def __init__(self, spec: str | None) -> None:
        self._spec = spec
        self._value: Any = None
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._child: tuple[int, int] | None = None
        if not self._fork():
            self._thread = threading.Thread(target=self._run, name="pci-explorer-preview", daemon=True)
            self._thread.start()

    def _fork(self) -> bool:
        if not hasattr(os, "fork") or threading.active_count() != 1:
            return False  # forking a process that runs other threads is not safe
        try:
            r, w = os.pipe()
        except OSError:
            return False
        try:
            pid = os.fork()
        except OSError:
            os.close(r)
            os.close(w)
            return False
        if pid == 0:  # the child: read, send, leave without running the parent's exit code
            try:
                os.close(r)
                try:
                    from .sources import preview_source

                    data = pickle.dumps(("ok", preview_source(self._spec)), protocol=pickle.HIGHEST_PROTOCOL)
                except BaseException:  # noqa: BLE001 - the parent reads it again and raises it
                    data = pickle.dumps(("failed", None))
                view = memoryview(data)
                while view:
                    view = view[os.write(w, view):]
            finally:
                os._exit(0)
        os.close(w)
        self._child = (pid, r)
        return True

    def _run(self) -> None:
        from .sources import preview_source

        try:
            self._value = preview_source(self._spec)
        except BaseException as e:  # noqa: BLE001 - handed to the app's load thread
            self._error = e

    def _from_child(self, pid: int, fd: int) -> Any:
        chunks = []
        try:
            while True:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            os.close(fd)
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        try:
            kind, value = pickle.loads(b"".join(chunks))
        except Exception:  # noqa: BLE001 - a child that died mid-way: read it here instead
            kind, value = "failed", None
        if kind == "ok":
            return value
        self._run()  # here, so an error is raised as it is without the child
        if self._error is not None:
            raise self._error
        return self._value

    def result(self) -> Any:
        if self._child is not None:
            pid, fd = self._child
            self._child = None
            self._value = self._from_child(pid, fd)
            return self._value
        if self._thread is not None:
            self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value
