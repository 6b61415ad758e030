"""The app as a 16-colour terminal (TERM=xterm, the Linux console) shows it, for snapshots."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import TypeVar

import pytest
from rich.color import ColorSystem
from rich.segment import Segment
from rich.style import Style
from textual.app import App
from textual.color import Color
from textual.filter import LineFilter

AppType = TypeVar("AppType", bound=App[None])


@lru_cache(1024)
def _sixteen(style: Style) -> Style:
    color = style.color.downgrade(ColorSystem.STANDARD) if style.color else None
    bgcolor = style.bgcolor.downgrade(ColorSystem.STANDARD) if style.bgcolor else None
    return style + Style(color=color, bgcolor=bgcolor)


class SixteenColours(LineFilter):
    """Every colour as the terminal shows it: the nearest of the 16 standard ones, as Rich picks it on output."""

    def apply(self, segments: list[Segment], background: Color) -> list[Segment]:
        return [Segment(text, _sixteen(style) if style else style, control) for text, style, control in segments]


def in_sixteen_colours(monkeypatch: pytest.MonkeyPatch, make_app: Callable[[], AppType]) -> AppType:
    """An app in a 16-colour terminal (``TERM=xterm``, as the user has it), rendered as that terminal shows it:
    what the app does not put in the terminal's own colours comes out as the nearest of them."""
    monkeypatch.setenv("TERM", "xterm")
    app = make_app()
    assert app.console.color_system == "standard"
    app._filters.append(SixteenColours())
    return app
