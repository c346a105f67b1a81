"""Datasets, label tables and class sets."""

from .classes import CLASS_SETS, ClassSet, class_set

__all__ = ["CLASS_SETS", "ClassSet", "class_set"]
