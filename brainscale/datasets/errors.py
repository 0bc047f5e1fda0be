"""Errors of the neuromorphic datasets, and the lazy import of their extras.

``DatasetError`` is a ``ValueError`` whose message always starts with the
file (or folder) that was wrong; ``MissingDataError`` adds where to put
which download, since nothing here downloads anything.
"""
from __future__ import annotations

import importlib

__all__ = ["DatasetError", "MissingDataError", "require"]


class DatasetError(ValueError):
    """Bad or unexpected data: the message names the path and what was wrong."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        super().__init__(f"{self.path}: {problem}")


class MissingDataError(DatasetError):
    """Dataset files are absent. The message names the folder that was
    searched, the archive to download (file name and URL, as tonic 1.7 lists
    them) and the folder to extract it into."""

    def __init__(self, dataset: str, missing, download: str, url: str, extract_into,
                 expect: str):
        self.dataset, self.download, self.url = dataset, download, url
        self.extract_into = str(extract_into)
        super().__init__(missing, (
            f"{dataset} data not found (expected {expect}). Nothing is downloaded "
            f"automatically: download {download} from {url} and extract it into "
            f"{self.extract_into}"))


def require(name: str):
    """Import an optional dependency of the datasets (``tonic`` or ``h5py``),
    or fail with the install command."""
    try:
        return importlib.import_module(name)
    except ImportError as e:
        top = name.split(".")[0]
        raise ImportError(f"the neuromorphic datasets need {top!r}: pip install -e "
                          f"'.[data]' in the checkout (or pip install {top}); importing "
                          f"{name!r} failed: {e}") from e
