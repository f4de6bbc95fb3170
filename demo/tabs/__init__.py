"""The demo's tabs: each capability is one module that registers a builder with :func:`register_tab`.

A builder is called inside its ``gr.Tab`` with the :class:`~demo.context.DemoContext` and creates that
tab's components, per-session ``gr.State`` and events. Adding a capability (3D scenes, dynamic
reasoning, hand-object referral) is one new module here, imported below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from demo.context import DemoContext

TabBuilder = Callable[[DemoContext], None]


@dataclass(frozen=True)
class TabSpec:
    """Attributes: title (the tab's label), order (tabs sort by it), build, available (whether the loaded model
    can serve the tab; an unavailable tab is still shown, with the reason)."""

    title: str
    order: int
    build: TabBuilder
    available: Callable[[DemoContext], str | None]


TABS: dict[str, TabSpec] = {}
"""Registered tabs by title."""


def register_tab(
    title: str, order: int, available: Callable[[DemoContext], str | None] = lambda context: None
) -> Callable[[TabBuilder], TabBuilder]:
    """Register ``build`` as the tab ``title``; ``available(context)``: why the model cannot serve it, or ``None``."""

    def decorator(build: TabBuilder) -> TabBuilder:
        if title in TABS:
            raise ValueError(f"a demo tab {title!r} is already registered")
        TABS[title] = TabSpec(title, order, build, available)
        return build

    return decorator


def registered_tabs() -> list[TabSpec]:
    """The registered tabs in their order."""
    return sorted(TABS.values(), key=lambda spec: spec.order)


from demo.tabs import (  # noqa: E402, F401  (register the tabs)
    dynamic_reasoning,
    hand_object,
    referring_segmentation,
    region_question,
    scene3d,
)
