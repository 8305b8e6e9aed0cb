"""Parsing perturbation labels such as ``"KLF1+MAP2K6"`` into sets of members."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence

import numpy as np


def parse_perturbation(label: str, control_value: str, delimiter: str = "+") -> tuple[str, ...]:
    """Split a perturbation label into its members.

    Parameters
    ----------
    label
        A perturbation label, e.g. ``"KLF1"`` or ``"KLF1+MAP2K6"``.
    control_value
        The label of unperturbed cells; it parses to the empty set, and so does ``control_value``
        appearing as a member (as in ``"KLF1+ctrl"``, a common way of writing singles).
    delimiter
        The string separating members of a combination.

    Returns
    -------
    The sorted, de-duplicated members; the empty tuple for control cells.
    """
    members = {m.strip() for m in str(label).split(delimiter)}
    members.discard(control_value)
    members.discard("")
    return tuple(sorted(members))


def members_to_index(
    labels: Sequence[str],
    vocabulary: Sequence[str],
    control_value: str,
    delimiter: str = "+",
) -> np.ndarray:
    """Turn perturbation labels into padded rows of indices into a feature vocabulary.

    Parameters
    ----------
    labels
        Perturbation labels, one per row of the output.
    vocabulary
        Names of the rows of the perturbation feature table.
    control_value
        Label of unperturbed cells.
    delimiter
        Separator of combination members.

    Returns
    -------
    Integer array ``(len(labels), max_members)``; ``-1`` pads rows with fewer members, and a
    control row is all ``-1``.

    Raises
    ------
    KeyError
        If a member has no row in ``vocabulary``; the message suggests close names.
    """
    position = {name: i for i, name in enumerate(vocabulary)}
    parsed = [parse_perturbation(label, control_value, delimiter) for label in labels]
    unknown = sorted({m for members in parsed for m in members if m not in position})
    if unknown:
        raise KeyError(unknown_perturbation_message(unknown, vocabulary))
    width = max([len(m) for m in parsed] + [1])
    index = np.full((len(parsed), width), -1, dtype=np.int64)
    for row, members in enumerate(parsed):
        index[row, : len(members)] = [position[m] for m in members]
    return index


def unknown_perturbation_message(unknown: Iterable[str], vocabulary: Sequence[str]) -> str:
    """Explain which perturbation members are unknown and what to do about it."""
    parts = []
    for name in unknown:
        close = difflib.get_close_matches(name, list(vocabulary), n=3, cutoff=0.6)
        hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
        parts.append(f"{name!r}{hint}")
    return (
        f"No perturbation features for {', '.join(parts)}. A perturbed gene needs a feature "
        "vector: by default genes measured in the training data have one; for anything else "
        "(genes not measured, drugs) pass `perturbation_features=` (a DataFrame indexed by "
        "perturbation name) when creating the model."
    )
