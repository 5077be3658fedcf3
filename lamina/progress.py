"""Progress inside a long component: a line every `every` seconds with the count, the rate and an ETA.

`lamina run` prints one line per component when it finishes. A component that takes minutes
(ExampleGen on a million rows, an epoch over them) also prints, while it runs:

    CsvExampleGen: 420,000 of 1,000,000 rows (42%), 5,210 rows/s, about 1m51s left

Nothing is printed for work that finishes within `every` seconds, so small runs look as before.
"""

import sys
import time
from typing import Optional, TextIO

PROGRESS_SECONDS = 20.0


def duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def progress_line(what: str, done: int, total: Optional[int], unit: str, elapsed: float) -> str:
    rate = done / elapsed if elapsed > 0 else 0.0
    if total:
        left = f", about {duration((total - done) / rate)} left" if rate > 0 and done < total else ""
        return f"{what}: {done:,} of {total:,} {unit} ({done / total:.0%}), {rate:,.0f} {unit}/s{left}"
    return f"{what}: {done:,} {unit}, {rate:,.0f} {unit}/s"


class Progress:
    """Call `update(done)` as often as you like; a line goes out at most every `every` seconds."""

    def __init__(self, what: str, total: Optional[int] = None, unit: str = "rows", every: Optional[float] = None,
                 stream: Optional[TextIO] = None, indent: str = "    "):
        self.what, self.total, self.unit, self.indent = what, total, unit, indent
        self.every = PROGRESS_SECONDS if every is None else every
        self.stream = stream  # None: sys.stdout when printing (TFX and pytest swap it)
        self.start = time.perf_counter()
        self._next = self.start + self.every
        self.printed = 0

    def restart(self, total: Optional[int] = None) -> None:
        self.total = total
        self.start = time.perf_counter()
        self._next = self.start + self.every

    def update(self, done: int) -> None:
        now = time.perf_counter()
        if now < self._next:
            return
        self._next = now + self.every
        self.printed += 1
        print(self.indent + progress_line(self.what, done, self.total, self.unit, now - self.start),
              file=self.stream or sys.stdout, flush=True)
