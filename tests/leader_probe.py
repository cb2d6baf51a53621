"""A member of the Kafka leader election in its own process, for tests: while it leads, its duty appends a
timestamp to its tick file every 50 ms, so a test can read from the files who led when.

    python -m tests.leader_probe BOOTSTRAP TOPIC GROUP TICK_FILE SESSION_TIMEOUT_S
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from pathlib import Path

from cxpulse.bus.leader import LeaderElection

TICK_S = 0.05


async def main(bootstrap: str, topic: str, group: str, ticks: Path, session_timeout_s: float) -> None:
    async def duty(deposed: asyncio.Event) -> None:
        with ticks.open("a") as out:
            out.write(f"start {time.time():.3f}\n")
            out.flush()
            while not deposed.is_set():
                out.write(f"tick {time.time():.3f}\n")
                out.flush()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(deposed.wait(), TICK_S)
            out.write(f"stop {time.time():.3f}\n")

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    election = LeaderElection(bootstrap, topic, group, duty, session_timeout_s=session_timeout_s)
    await election.run(stop)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    bootstrap, topic, group, tick_file, timeout = sys.argv[1:6]
    asyncio.run(main(bootstrap, topic, group, Path(tick_file), float(timeout)))
