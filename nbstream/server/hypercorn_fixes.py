"""The fixes nbstream applies to hypercorn when a server starts (:mod:`nbstream.server.h2_flow`,
:mod:`nbstream.server.h11_heads`), and how each finds the method it replaces."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("nbstream.server")


def apply() -> None:
    """Apply every fix (each once, however often this is called)."""
    from nbstream.server.h2_flow import bound_h2_stream_buffers, drop_data_of_ended_h2_streams
    from nbstream.server.h11_heads import coalesce_h11_heads

    bound_h2_stream_buffers()
    drop_data_of_ended_h2_streams()
    coalesce_h11_heads()


def method_to_patch(module: object, class_name: str, method: str, marker: str,
                    unfixed: str) -> tuple[Any, Any] | bool:
    """``module.class_name`` and its ``method``, to be replaced by the fix that sets ``marker`` on
    the class; else whether the fix holds: True if ``marker`` is set already, False (and a warning
    saying what stays ``unfixed``) where hypercorn's layout is not the one expected."""
    cls = getattr(module, class_name, None)
    original = getattr(cls, method, None)
    if cls is None or original is None:
        log.warning("hypercorn's %s.%s is not where expected: %s", class_name, method, unfixed)
        return False
    if getattr(cls, marker, False):
        return True
    return cls, original
