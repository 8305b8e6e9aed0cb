"""Training and query cells in one AnnData, the input of scvi-tools models that impute."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from scjepa.data._validation import get_layer


def stacked_counts(
    train: AnnData,
    query: AnnData,
    layer: str | None,
    batch_key: str | None,
    query_batches: bool = True,
) -> AnnData:
    """Training and query RNA counts in one AnnData, in ``layers["counts"]`` and ``X``.

    ``obs["_batch"]`` holds the batches; with ``query_batches`` the query cells get batches of
    their own (``"query-<batch>"``), for models that tell a missing modality by its batch.
    """
    counts = sparse.vstack(
        [sparse.csr_matrix(get_layer(train, layer)), sparse.csr_matrix(get_layer(query, layer))]
    ).tocsr()
    train_batch = train.obs[batch_key].astype(str) if batch_key else pd.Series("0", train.obs_names)
    query_batch = query.obs[batch_key].astype(str) if batch_key else pd.Series("0", query.obs_names)
    query_prefix = "query-" if query_batches else ""
    obs = pd.DataFrame(
        {
            "_batch": np.concatenate(
                [train_batch.to_numpy(), (query_prefix + query_batch).to_numpy()]
            )
        },
        index=list(train.obs_names) + list(query.obs_names),
    )
    combined = AnnData(X=counts, obs=obs, var=pd.DataFrame(index=train.var_names.copy()))
    combined.layers["counts"] = counts.copy()
    return combined
