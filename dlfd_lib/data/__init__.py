"""Datasets for the kit: every one of them produces an :class:`UnlearningSplits`."""
from .errors import DatasetError, DatasetNotFoundError
from .folder import load_folder
from .hygiene import drop_forget_leaks, duplicate_summary, find_duplicates, plot_duplicate_pairs
from .load import DATASETS, load_splits
from .mufac import MUFAC_CLASSES, load_mufac
from .preview import class_sheet, identity_sheet
from .rafdb import RAFDB_CLASSES, load_rafdb
from .splits import FileSource, SplitDataset, TensorSource, UnlearningSplits
from .synthetic import make_synthetic_splits
from .view import MethodSplits, TestSplitAccessError, method_view, tuning_validation, validation_halves

__all__ = ["load_splits", "DATASETS", "UnlearningSplits", "SplitDataset", "TensorSource", "FileSource",
           "make_synthetic_splits", "identity_sheet", "class_sheet",
           "load_mufac", "load_rafdb", "load_folder", "MUFAC_CLASSES", "RAFDB_CLASSES",
           "DatasetError", "DatasetNotFoundError",
           "find_duplicates", "duplicate_summary", "plot_duplicate_pairs", "drop_forget_leaks",
           "MethodSplits", "TestSplitAccessError", "method_view", "tuning_validation", "validation_halves"]
