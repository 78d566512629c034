"""A simulated subscription business whose customers churn month by month."""

from cd4ml.examples.churn.world import PAYMENT_METHODS, PLANS, REGIONS, ChurnWorld

__all__ = ["PAYMENT_METHODS", "PLANS", "REGIONS", "ChurnWorld"]
