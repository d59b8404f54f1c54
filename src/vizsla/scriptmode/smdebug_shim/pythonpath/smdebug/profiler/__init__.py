"""smdebug.profiler: only the helpers scripts import (Vizsla's profiler does the profiling)."""
