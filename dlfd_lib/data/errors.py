"""The errors of the data package: a dataset that cannot be loaded as given says which file or
field is at fault and how to fix it (every loader, :mod:`.common`'s checks and :mod:`.hygiene`
raise these)."""
from __future__ import annotations

__all__ = ["DatasetError", "DatasetNotFoundError"]


class DatasetError(ValueError):
    """A dataset that cannot be loaded as given; the message names the file or field at fault
    and says how to fix it."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """A data root, CSV file, image folder or image file that does not exist."""
