"""Datasets for the kit: every one of them produces an :class:`UnlearningSplits`."""
from .load import DATASETS, load_splits
from .preview import class_sheet, identity_sheet
from .splits import SplitDataset, TensorSource, UnlearningSplits
from .synthetic import make_synthetic_splits

__all__ = ["load_splits", "DATASETS", "UnlearningSplits", "SplitDataset", "TensorSource", "make_synthetic_splits",
           "identity_sheet", "class_sheet"]
