"""smdebug.profiler.utils: str2bool, which training scripts import for argparse flags."""

from vizsla.scriptmode.smdebug_shim.config import str2bool

__all__ = ["str2bool"]
