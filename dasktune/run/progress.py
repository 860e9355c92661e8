"""Progress bars (``tqdm.auto``) that start no monitor thread."""

from __future__ import annotations

from typing import Any

from tqdm.auto import tqdm


class _Bar(tqdm):
    # tqdm's monitor thread outlives the bar; dasktune joins every thread it starts
    monitor_interval = 0


class _NoBar:
    """Stands in for a bar when progress is off."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(enabled: bool, **kwargs: Any) -> Any:
    """A ``tqdm.auto`` bar when ``enabled``, else an object that does nothing."""
    return _Bar(**kwargs) if enabled else _NoBar()
