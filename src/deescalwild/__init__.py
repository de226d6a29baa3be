"""deescalwild: police-civilian de-escalation dialogue from in-the-wild video.

Kept import-light: `deescalwild --help` must not pay for scikit-learn, matplotlib or torch.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("deescalwild")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
