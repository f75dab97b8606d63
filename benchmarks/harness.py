"""Run one measurement in a child process and read its time and peak memory."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Measurement:
    name: str
    seconds: float
    peak_mb: float
    detail: dict[str, Any]


def peak_rss_mb() -> float:
    """This process's own peak RSS. Not getrusage: Linux carries ru_maxrss across exec, so a
    child would report its parent's peak; VmHWM belongs to the new address space."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def emit(seconds: float, **detail: Any) -> None:
    """What a child prints: its timing, its own peak memory and any detail."""
    print(json.dumps({"seconds": seconds, "peak_mb": peak_rss_mb(), **detail}))


def measure(module: str, name: str, *args: str) -> Measurement:
    """Run ``python -m module name args...`` alone and read the JSON line it ends with."""
    done = subprocess.run(
        [sys.executable, "-m", module, name, *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{name} failed ({done.returncode}): {done.stderr[-2000:]}")
    detail = json.loads(done.stdout.strip().splitlines()[-1])
    return Measurement(name, float(detail.pop("seconds")), float(detail.pop("peak_mb")), detail)
