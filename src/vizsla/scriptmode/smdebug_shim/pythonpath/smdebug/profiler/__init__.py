"""smdebug.profiler (SD smdebug/profiler/__init__.py): trace parsers, importable; Vizsla's profiler reads its
own files (`vizsla profile DIR`), so using them raises NotImplementedError."""

from vizsla.scriptmode.smdebug_shim.stubs import unavailable_class

_WHY = (
    "Vizsla's profiler records its own timeline: see DIR/reports/profiler-report.html or `vizsla profile DIR`"
)
HorovodProfilerEvents = unavailable_class("smdebug.profiler.HorovodProfilerEvents", _WHY)
SMProfilerEvents = unavailable_class("smdebug.profiler.SMProfilerEvents", _WHY)
TensorboardProfilerEvents = unavailable_class("smdebug.profiler.TensorboardProfilerEvents", _WHY)
TraceEvent = unavailable_class("smdebug.profiler.TraceEvent", _WHY)
TraceEventParser = unavailable_class("smdebug.profiler.TraceEventParser", _WHY)

__all__ = [
    "HorovodProfilerEvents",
    "SMProfilerEvents",
    "TensorboardProfilerEvents",
    "TraceEvent",
    "TraceEventParser",
]
