"""Errors the frontend raises: one-line messages that name the user's file and line."""

from __future__ import annotations


class FrontendError(Exception):
    """The model cannot be turned into dataflow IR (a one-line message, no traceback needed)."""


class UnsupportedOpError(FrontendError):
    """An ATen op (or a form of it) the frontend does not convert.

    The message reads ``model.py:12: unsupported op aten._fft_r2c.default``; for an op of the
    backward pass it ends with ``(gradient of this line)``.
    """

    def __init__(self, where: str, op: str, detail: str = "", backward: bool = False) -> None:
        self.where = where
        self.op = op
        self.detail = detail
        self.backward = backward
        message = f"{where}: unsupported op {op}"
        if detail:
            message += f": {detail}"
        if backward:
            message += " (gradient of this line)"
        super().__init__(message)
