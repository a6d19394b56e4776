"""Model surgery: finding pooling sites (sites), deciding what to do (plan), doing it (apply)."""

from .apply import apply, patch
from .plan import Plan, plan
from .replacements import LiftPoolReplacement, LiftUnpoolReplacement
from .sites import Site

__all__ = ["patch", "apply", "plan", "Plan", "Site", "LiftPoolReplacement", "LiftUnpoolReplacement"]
