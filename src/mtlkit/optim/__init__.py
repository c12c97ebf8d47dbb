"""Optimisation pieces a method plugs in: gradient combiners, schedules (proximal operators and task
weightings arrive with the methods that need them)."""

from mtlkit.optim.combiners import Combiner, SumCombiner
from mtlkit.optim.prox import prox_element, prox_exclusive
from mtlkit.optim.schedule import exponential_decay

__all__ = ["Combiner", "SumCombiner", "exponential_decay", "prox_element", "prox_exclusive"]
