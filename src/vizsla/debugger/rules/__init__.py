"""Debugger rules: a small base class, one file per built-in rule, and a registry by name."""

from __future__ import annotations

from vizsla.debugger.rules.base import BaseRule, Finding
from vizsla.debugger.rules.registry import (
    DEFAULT_RULES,
    create_rule,
    get_rule_class,
    list_rules,
    register_rule,
)

__all__ = [
    "DEFAULT_RULES",
    "BaseRule",
    "Finding",
    "create_rule",
    "get_rule_class",
    "list_rules",
    "register_rule",
]
