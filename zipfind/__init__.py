"""zipfind: how Zipfian, bursty training data decide when induction heads form."""

__version__ = "0.1.0"
