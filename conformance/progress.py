"""What `lmspec check` is doing, shown in an interactive terminal: one transient line on stderr with the time
elapsed, the invariant (i of n), the examples it has run so far, its id and dtype, redrawn a few times a second:

    ⠹ 0:07  invariant 3/16  41 examples  softmax.shift_invariance [float16]

Only where stderr is a terminal and not in CI (`CI` set) or a dumb terminal; `--quiet` shows none. Piped or
captured output never sees it, so what `lmspec check` prints there is unchanged. Result lines go to stdout as
before: the live line is taken down while one is printed, and put back after it.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Callable


def wanted(quiet: bool = False) -> bool:
    """Whether to show progress: stderr is an interactive terminal, not CI, not --quiet."""
    if quiet or os.environ.get("CI") or os.environ.get("TERM") == "dumb":
        return False
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes}:{seconds:02d}" if minutes < 60 else f"{minutes // 60}:{minutes % 60:02d}:{seconds:02d}"


class CheckProgress:
    """Context manager around `run_component`: pass `example` as its `on_example` and `result(print_result)` as
    its `on_result`. `plan` lists the (invariant id, dtype) pairs in the order they run."""

    def __init__(self, component: str, plan: list[tuple[str, str]], refresh_per_second: float = 8):
        self.component, self.plan = component, plan
        self.index, self.examples = 0, 0
        self.started = time.monotonic()
        from rich.console import Console  # imported only when shown: a piped run does not pay for it
        from rich.live import Live
        from rich.spinner import Spinner

        self._spinner = Spinner("dots", style="cyan")
        self._live = Live(console=Console(stderr=True, highlight=False), get_renderable=self._render, transient=True,
                          redirect_stdout=False, redirect_stderr=False, refresh_per_second=refresh_per_second)

    def __enter__(self) -> CheckProgress:
        self._live.start(refresh=True)
        return self

    def __exit__(self, *exc) -> None:
        self._live.stop()

    def example(self, count: int) -> None:
        """Examples run so far for the current invariant x dtype (the runner's on_example)."""
        self.examples = count

    def result(self, print_result: Callable) -> Callable:
        """The runner's on_result: take the live line down, print the result, move on to the next pair."""

        def on_result(result) -> None:
            self._live.stop()
            try:
                print_result(result)
            finally:
                self.index, self.examples = self.index + 1, 0
                if self.index < len(self.plan):
                    self._live.start(refresh=True)

        return on_result

    def _render(self):
        from rich.text import Text

        n = len(self.plan)
        invariant, dtype = self.plan[min(self.index, n - 1)] if n else ("", "")
        now = time.monotonic()
        text = Text(no_wrap=True, overflow="ellipsis")  # one line, cut at the terminal's width
        text.append_text(self._spinner.render(now))
        text.append(f" {_clock(now - self.started)}  ", style="dim")
        text.append(f"invariant {min(self.index + 1, n)}/{n}", style="bold")
        text.append(f"  {self.examples} example{'s' if self.examples != 1 else ''}  ")
        text.append(invariant)
        text.append(f" [{dtype}]", style="cyan")
        return text
