"""Generated data sets for tutorials and tests, and loaders for public data."""

from scjepa.datasets._citeseq_demo import citeseq_demo
from scjepa.datasets._download import cache_dir, fetch, sha256sum
from scjepa.datasets._multiome_demo import multiome_demo
from scjepa.datasets._norman import norman_2019
from scjepa.datasets._pbmc_citeseq import pbmc_10k_citeseq
from scjepa.datasets._perturbseq_demo import perturbseq_demo
from scjepa.datasets._timecourse_demo import timecourse_demo

__all__ = [
    "cache_dir",
    "citeseq_demo",
    "fetch",
    "multiome_demo",
    "norman_2019",
    "pbmc_10k_citeseq",
    "perturbseq_demo",
    "sha256sum",
    "timecourse_demo",
]
