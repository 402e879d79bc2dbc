"""The model store: zoos under a home folder, models published atomically, PTMZ import and export."""

from zoobench.store.home import CatalogueEntry, Store, default_home
from zoobench.store.writer import ModelWriter, install
from zoobench.store.zoo import MARKER, WEIGHTS, ModelRecord, ZooStore, checkpoint_name

__all__ = ["MARKER", "WEIGHTS", "CatalogueEntry", "ModelRecord", "ModelWriter", "Store", "ZooStore",
           "checkpoint_name", "default_home", "install"]
