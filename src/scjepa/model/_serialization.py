"""Model files that load without unpickling.

scvi-tools stores a model's attributes with ``pickle`` inside ``torch.save``; loading such a file
runs whatever code it names. scjepa writes tensors with ``torch.save`` and everything else as JSON
text inside the same file, so ``torch.load(..., weights_only=True)`` reads it safely.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import pandas as pd
import torch

MODEL_FILE = "model.pt"
ADATA_FILE = "adata.h5ad"
MUDATA_FILE = "mdata.h5mu"
FORMAT_VERSION = 1


def encode(obj: Any) -> Any:
    """Turn attributes (dicts, arrays, DataFrames, ...) into JSON-compatible values, reversibly."""
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": [encode(v) for v in obj.tolist()], "dtype": obj.dtype.str}
    if isinstance(obj, pd.DataFrame):
        return {
            "__dataframe__": {
                "index": encode(np.asarray(obj.index)),
                "index_name": obj.index.name,
                "columns": [[str(c), encode(np.asarray(obj[c]))] for c in obj.columns],
            }
        }
    if isinstance(obj, pd.Index):
        return encode(np.asarray(obj))
    if isinstance(obj, tuple):
        return {"__tuple__": [encode(v) for v in obj]}
    if isinstance(obj, list):
        return [encode(v) for v in obj]
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: encode(v) for k, v in obj.items()}
        return {"__items__": [[encode(k), encode(v)] for k, v in obj.items()]}
    raise TypeError(f"Cannot store an attribute of type {type(obj).__name__} in a model file.")


def decode(obj: Any) -> Any:
    """Inverse of :func:`encode`."""
    if isinstance(obj, list):
        return [decode(v) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__ndarray__" in obj:
        dtype = np.dtype(obj["dtype"])
        values = decode(obj["__ndarray__"])
        if dtype.kind == "O":
            array = np.empty(len(values), dtype=object)
            array[:] = values
            return array
        return np.asarray(values, dtype=dtype)
    if "__dataframe__" in obj:
        spec = obj["__dataframe__"]
        frame = pd.DataFrame(
            {name: decode(values) for name, values in spec["columns"]},
            index=pd.Index(decode(spec["index"]), name=spec["index_name"]),
        )
        return frame
    if "__tuple__" in obj:
        return tuple(decode(v) for v in obj["__tuple__"])
    if "__items__" in obj:
        return {_hashable(decode(k)): decode(v) for k, v in obj["__items__"]}
    return {k: decode(v) for k, v in obj.items()}


def _hashable(key: Any) -> Any:
    return tuple(key) if isinstance(key, list) else key


def write_model_file(
    path: str, state_dict: dict[str, torch.Tensor], var_names: np.ndarray, attributes: dict
) -> None:
    """Write tensors, gene names and attributes to one ``torch.save`` file of safe types."""
    torch.save(
        {
            "format_version": FORMAT_VERSION,
            "model_state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
            "var_names": [str(v) for v in var_names],
            "attributes_json": json.dumps(encode(attributes)),
        },
        path,
    )


def read_model_file(path: str) -> tuple[dict[str, torch.Tensor], np.ndarray, dict]:
    """Read a file written by :func:`write_model_file` with ``weights_only=True``."""
    if not os.path.exists(path):
        raise ValueError(f"No saved model at {path!r}; save one with `model.save(dir_path)`.")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unpickling refusal means the same to the user
        raise ValueError(
            f"{path!r} is not a scjepa model file, or holds objects that cannot be loaded safely."
        ) from error
    if not isinstance(saved, dict) or "attributes_json" not in saved:
        raise ValueError(f"{path!r} is not a scjepa model file.")
    attributes = decode(json.loads(saved["attributes_json"]))
    return saved["model_state_dict"], np.asarray(saved["var_names"], dtype=object), attributes
