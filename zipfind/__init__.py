"""zipfind: how Zipfian, bursty training data decide when induction heads form.

`zipfind.load(DIR)` opens a run directory (spec, cells, metrics, onsets) without importing torch;
`zipfind.theory` holds the analytic timing models.
"""

__version__ = "0.4.0"

from .store import load  # noqa: E402

__all__ = ["load", "__version__"]
