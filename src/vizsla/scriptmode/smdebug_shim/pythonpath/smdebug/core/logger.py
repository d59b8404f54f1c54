"""smdebug.core.logger: get_logger (SD smdebug/core/logger.py): loggers under "smdebug"."""

import logging


def get_logger(name: str = "smdebug") -> logging.Logger:
    """The "smdebug" logger, or its child NAME."""
    return logging.getLogger(name if name == "smdebug" or name.startswith("smdebug.") else f"smdebug.{name}")


__all__ = ["get_logger"]
