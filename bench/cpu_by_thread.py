"""CPU used by each thread of a process over a window, from /proc (user + system time), and the machine's idle.

    python -m bench.cpu_by_thread PID [--seconds 6]

Run it while a load generator drives the service. Unlike the first screen of ``top -H`` (an average since
each thread started), this measures only the window.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path


def thread_times(pid: int) -> dict[str, tuple[str, int]]:
    """thread id -> (name, user + system clock ticks so far)."""
    times = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except FileNotFoundError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        times[tid] = (name, int(fields[11]) + int(fields[12]))
    return times


def machine_ticks() -> list[int]:
    return [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pid", type=int)
    parser.add_argument("--seconds", type=float, default=6.0)
    args = parser.parse_args()
    before, machine_before = thread_times(args.pid), machine_ticks()
    time.sleep(args.seconds)
    after, machine_after = thread_times(args.pid), machine_ticks()
    hz = os.sysconf("SC_CLK_TCK")
    usage = {tid: (after[tid][1] - before.get(tid, after[tid])[1]) / hz / args.seconds for tid in after}
    for tid in sorted(usage, key=lambda t: -usage[t]):
        if usage[tid] >= 0.005:
            print(f"{tid:>8} {after[tid][0]:16s} {usage[tid] * 100:6.1f}% of a core")
    delta = [b - a for a, b in zip(machine_before, machine_after, strict=True)]
    print(f"machine idle: {delta[3] / sum(delta) * 100:.1f}% of all cores")


if __name__ == "__main__":
    main()
