"""Printing and writing a benchmark's summary table, bar check and raw scores."""

from __future__ import annotations

import os

import pandas as pd


def peak_memory_gb() -> float:
    """This process's peak resident memory in GiB.

    ``/proc/self/status``'s ``VmHWM`` starts afresh with the program; ``getrusage``'s
    ``ru_maxrss`` of a worker started by ``subprocess`` also counts its parent's memory.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def verdict(margin: float, spread: float) -> str:
    """ "wins" when ``margin`` (positive: the model is better) exceeds ``spread``, "matches" when
    the model is worse by at most ``spread``, else "loses"."""
    if margin > spread:
        return "wins"
    return "matches" if margin >= -spread else "loses"


def write_results(stem: str, header: str, text: str, scores: pd.DataFrame) -> None:
    """Print ``text``; write it under ``header`` to ``{stem}.md`` and ``scores`` to
    ``{stem}_scores.csv``."""
    print(text)
    scores.to_csv(f"{stem}_scores.csv", index=False)
    with open(f"{stem}.md", "w") as handle:
        handle.write(f"{header}\n\n{text}\n")
    print(f"written to {stem}.md")


def report(
    name: str, table: pd.DataFrame, check: pd.DataFrame, scores: pd.DataFrame, out: str, header: str
) -> None:
    """Print table and bar check; write them to ``{out}/{name}.md``, the scores to CSV."""
    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 30)
    text = f"{table.to_string()}\n\n{check.to_string(index=False)}"
    write_results(os.path.join(out, name), header, text, scores)
