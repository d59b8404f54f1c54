"""smdebug.rules.action (SD smdebug/rules/action/__init__.py): Actions."""

from .action import Actions

__all__ = ["Actions"]
