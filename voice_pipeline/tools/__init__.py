"""Tools: deterministic answers the small model gets wrong (arithmetic, units, dates, timers), and
the registry that custom Python tools join (see docs/tools.md)."""

from voice_pipeline.tools import arithmetic, clock, timers, units
from voice_pipeline.tools.registry import Tool, ToolContext, ToolRegistry, ToolResult, tool_from_function

__all__ = ["Tool", "ToolContext", "ToolRegistry", "ToolResult", "builtin_tools", "tool_from_function"]


def builtin_tools() -> ToolRegistry:
    """A fresh registry with the built-in tools; the first parser that claims an utterance answers it."""
    registry = ToolRegistry()
    for tool in (timers.CANCEL_TOOL, timers.SET_TOOL, clock.TOOL, units.TOOL, arithmetic.TOOL):
        registry.add(tool)
    return registry
