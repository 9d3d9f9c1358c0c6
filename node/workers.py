"""Helper processes of a node (miner pool, signature workers) end with the node.

A node killed with SIGKILL cannot stop its pool processes; a worker blocked on its task queue would then
live on, orphaned, holding memory and sometimes a core. Each worker watches its parent instead.
"""
from __future__ import annotations

import os
import threading
import time

PARENT_POLL_S = 0.5


def exit_with_parent(parent: int) -> None:
    """Process-pool initializer: exit this process as soon as `parent` (the node's pid, passed in, since
    the node may already be gone when this runs) is no longer its parent."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        os._exit(0)
    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
