"""Methods (trainers) and acquisition strategies, behind the contract of ``baselines.base``."""

from baselines.base import METHODS, STRATEGIES, Method, Strategy, register_method, register_strategy

__all__ = ["METHODS", "STRATEGIES", "Method", "Strategy", "register_method", "register_strategy"]
