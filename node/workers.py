"""Helper processes of a node (miner pool, signature workers) end with the node.

A node killed with SIGKILL cannot stop its pool processes; a worker blocked on its task queue would then
live on, orphaned, holding memory and sometimes a core. Each worker watches its parent instead.
"""
from __future__ import annotations

import os
import threading
import time

PARENT_POLL_S = 0.5


def exit_with_parent() -> None:
    """Process-pool initializer: exit this process as soon as the process that started it is gone."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        os._exit(0)
    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
