"""Functions running in the background while a command waits for their work: each queue's messages
delivered to its handler, the way Lambda's SQS event source does it, until the block ends."""
from __future__ import annotations

import contextlib
import threading
from typing import Any, Iterator, Mapping

from support.lambda_events import OK, Handler


@contextlib.contextmanager
def delivering(queues: Mapping[str, Any], handlers: Mapping[str, Handler], idle_s: float = 0.1) -> Iterator[list[str]]:
    """Deliver `queues[name]` to `handlers[name]` for each name until the block ends; yields the names
    of the functions that answered with a failed record (one entry a batch)."""
    stop, failures = threading.Event(), []

    def work() -> None:
        while not stop.is_set():
            ran = False
            for name, handler in handlers.items():
                messages = queues[name].receive()
                if messages:
                    ran = True
                    if queues[name].deliver(handler, messages) != OK:
                        failures.append(name)
            if not ran:
                stop.wait(idle_s)

    thread = threading.Thread(target=work)
    thread.start()
    try:
        yield failures
    finally:
        stop.set()
        thread.join()
