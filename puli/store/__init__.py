"""Persistence of the farm model: SQLObject tables, submission commits, write-behind, restore."""
from .connection import StoreError
from .store import Store, open_store

__all__ = ["Store", "StoreError", "open_store"]
