"""Errors the frontend raises: one-line messages that name the user's file and line."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from compiler.frontend.locations import CallSite


class FrontendError(Exception):
    """The model cannot be turned into dataflow IR (a one-line message, no traceback needed)."""


class UnsupportedOpError(FrontendError):
    """An ATen op (or a form of it) the frontend does not convert.

    The message reads ``model.py:12: unsupported op aten._fft_r2c.default`` when the user's line
    calls the op itself, and names the library line that called it otherwise:
    ``model.py:25: unsupported op aten.cos.default (modeling_llama.py:113 in
    LlamaRotaryEmbedding.forward, from model.py:25)``. An op of the backward pass says
    ``(gradient of this line)``, or ``(gradient of modeling_llama.py:113 in ..., from ...)``.
    """

    def __init__(
        self,
        where: str,
        op: str,
        detail: str = "",
        backward: bool = False,
        call_site: CallSite | None = None,
    ) -> None:
        self.where = where
        self.op = op
        self.detail = detail
        self.backward = backward
        self.call_site = call_site
        message = f"{where}: unsupported op {op}"
        if detail:
            message += f": {detail}"
        gradient = "gradient of " if backward else ""
        if call_site is not None:
            message += f" ({gradient}{call_site}, from {where})"
        elif backward:
            message += " (gradient of this line)"
        super().__init__(message)
