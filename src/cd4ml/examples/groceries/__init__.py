"""A simulated Favorita-like grocery retailer (Corporación Favorita, Ecuador)."""

from cd4ml.examples.groceries.world import (
    FAMILIES,
    PERISHABLE_FAMILIES,
    GroceryWorld,
    RegimeChange,
)

__all__ = ["FAMILIES", "PERISHABLE_FAMILIES", "GroceryWorld", "RegimeChange"]
