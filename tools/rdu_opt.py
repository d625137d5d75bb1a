"""rdu-opt: run any pass pipeline over RDU IR, like mlir-opt / xdsl-opt.

    rdu-opt f.mlir -p convert-dataflow-to-rdu-tile,convert-rdu-tile-to-pcu-pmu

It is xdsl-opt with our dialects and passes registered, and with mlir-opt's manners on errors:
bad IR (a syntax error, an unknown op, a type mismatch, a failed verifier) is one line on stderr,
``FILE:LINE:COL: error: MESSAGE``, and exit status 1. The position is where the offending op
starts in the input; an op a pass created reports its ``loc(...)`` instead. A bad command line
(unknown pass, bad pass option, unreadable file) is ``rdu-opt: error: MESSAGE``, status 1; a
failing pass is ``FILE: error: PASS: MESSAGE``, status 1; an internal error exits 2 and an
interrupt 130. ``--debug`` shows the traceback instead. ``--verify-diagnostics`` and
``--parsing-diagnostics`` keep xdsl's behaviour (print the diagnostic, exit 0), for lit tests.

``load_ir`` is the same parser front as a function (parse and verify, raise ``IrError``); the
fuzz tests drive it.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import re
import sys
from collections.abc import Callable, Sequence
from typing import IO, NoReturn

from xdsl.context import Context
from xdsl.dialects.builtin import FileLineColLoc, ModuleOp
from xdsl.ir import Operation, TypeAttribute
from xdsl.parser import Parser
from xdsl.parser.generic_parser import ParserState
from xdsl.passes import ModulePass, PassPipeline
from xdsl.utils.arg_spec import ArgSpec, parse_pipeline
from xdsl.utils.exceptions import (
    ArgSpecParseError,
    DiagnosticException,
    ParseError,
    VerifyException,
)
from xdsl.utils.lexer import Input, Span
from xdsl.utils.mlir_lexer import MLIRLexer, MLIRTokenKind
from xdsl.xdsl_opt_main import xDSLOptMain

from compiler.passes import all_passes
from compiler.value_names import source_location
from dialects import all_dialects


class IrError(Exception):
    """Malformed or invalid IR: ``FILE:LINE:COL: error: MESSAGE`` (one line)."""

    def __init__(self, where: str, message: str) -> None:
        self.where = where
        self.message = " ".join(message.split()) or "invalid IR"
        super().__init__(f"{where}: error: {self.message}")


class OptUsageError(Exception):
    """A bad rdu-opt command line: unknown pass or option, unreadable input (one line)."""


# -- the parser front ----------------------------------------------------------------------------


MAX_INTEGER_WIDTH = 16_777_215
"""The widest integer type MLIR accepts (``IntegerType::kMaxWidth``)."""


class _Lexer(MLIRLexer):
    """xDSL's lexer with a string-literal pattern that cannot backtrack exponentially.

    xdsl 0.74 matches string literals with ``"(?:[^"...]+|escape)*"``: a ``+`` inside a
    ``*``, which on a string missing its closing quote tries every way of cutting the line and
    never finishes (the fuzz test found rdu-opt hanging on such an input). One character per
    repetition accepts the same strings in linear time.
    """

    _unescaped_characters_regex = re.compile(r'"(?:[^"\\\n\v\f]|\\(?:["nt\\]|[0-9A-Fa-f]{2}))*"')


class _LocatingParser(Parser):
    """xDSL's parser, remembering where each operation starts (verifier errors point there)."""

    def __init__(self, ctx: Context, text: str, name: str) -> None:
        super().__init__(ctx, "", name)
        self._parser_state = ParserState(_Lexer(Input(text, name)))
        self.starts: dict[Operation, Span[str]] = {}

    def _parse_optional_integer_or_float_type(self) -> TypeAttribute | None:
        """Refuse an integer type wider than MLIR allows before xdsl computes its bounds (a
        ``1 << width`` that takes forever or overflows for a mistyped ``i99999999999``)."""
        token = self._current_token
        if token.kind == MLIRTokenKind.BARE_IDENT:
            match = self._builtin_integer_type_regex.match(token.text)
            if match is not None and (
                len(match.group(1)) > 8 or int(match.group(1)) > MAX_INTEGER_WIDTH
            ):
                self.raise_error(f"integer type is wider than {MAX_INTEGER_WIDTH} bits", token.span)
        return super()._parse_optional_integer_or_float_type()

    def parse_operation(self) -> Operation:
        start = self._current_token.span
        op = super().parse_operation()
        self.starts[op] = start
        return op


def _decode(data: bytes | str, name: str, line_offset: int) -> str:
    """The input as text; bytes that are not UTF-8 are a located IrError."""
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        before = data[: error.start]
        line = before.count(b"\n") + 1 + line_offset
        col = error.start - (before.rfind(b"\n") + 1) + 1
        raise IrError(
            f"{name}:{line}:{col}", f"invalid UTF-8 byte 0x{data[error.start]:02x}"
        ) from None


def _span_where(span: Span[str] | Span[bytes], line_offset: int = 0) -> str:
    if line_offset:
        span = dataclasses.replace(span, line_offset=line_offset)
    location = span.get_location()
    return f"{location.file}:{location.line}:{location.col}"


def _op_where(op: Operation, starts: dict[Operation, str], fallback: str) -> str:
    """Where ``op`` starts in the input, else its ``loc(...)``, else ``fallback``."""
    if op in starts:
        return starts[op]
    loc = source_location(op.location)
    if isinstance(loc, FileLineColLoc):
        return f"{loc.filename.data}:{loc.line.data}:{loc.column.data}"
    return fallback


def _failing_op(module: Operation) -> tuple[Operation, Exception] | None:
    """The op whose own checks fail, nested ops first (the order ``verify`` uses)."""
    for op in module.walk(region_first=True):
        try:
            op.verify(verify_nested_ops=False)
        except (VerifyException, ValueError) as error:
            return op, error
    return None


def verify_error(
    error: Exception, module: Operation | None, starts: dict[Operation, str], name: str
) -> IrError:
    """A failed verification as an IrError at the failing op."""
    found = _failing_op(module) if module is not None else None
    if found is None:
        return IrError(name, str(error))
    op, own = found
    return IrError(_op_where(op, starts, name), str(own) or str(error))


def load_ir(
    data: bytes | str,
    name: str = "<input>",
    *,
    ctx: Context | None = None,
    implicit_module: bool = True,
    line_offset: int = 0,
) -> ModuleOp:
    """Parse and verify IR as rdu-opt does; anything wrong is an ``IrError`` with its position."""
    ctx = ctx if ctx is not None else make_context()
    text = _decode(data, name, line_offset)
    parser: _LocatingParser | None = None
    try:
        parser = _LocatingParser(ctx, text, name)  # lexes the first token: may raise
        module = parser.parse_module(implicit_module)
    except ParseError as error:
        raise IrError(_span_where(error.span, line_offset), error.msg) from None
    except (VerifyException, ValueError) as error:
        # An attribute or type that fails its own checks while being built: xdsl raises these
        # from inside the parser, without a position; the parser's current token is the place.
        where = f"{name}:{1 + line_offset}:1"
        if parser is not None:
            where = _span_where(parser._current_token.span, line_offset)
        raise IrError(where, str(error)) from None
    starts = {op: _span_where(span, line_offset) for op, span in parser.starts.items()}
    try:
        module.verify()
    except (VerifyException, ValueError) as error:
        raise verify_error(error, module, starts, name) from None
    return module


def make_context() -> Context:
    """A context with our dialects and xdsl's (as rdu-opt has)."""
    from xdsl.universe import Universe

    ctx = Context()
    for name, factory in Universe.get_multiverse().all_dialects.items():
        ctx.register_dialect(name, factory)
    for name, factory in all_dialects().items():
        ctx.register_dialect(name, factory)
    return ctx


# -- the command ---------------------------------------------------------------------------------


class RduOptMain(xDSLOptMain):
    """xdsl-opt with our dialects and passes registered (on top of xdsl's own) and errors as
    one located line (see the module docstring)."""

    def __init__(self, description: str, args: Sequence[str] | None = None) -> None:
        self._line_offset = 0
        self._starts: dict[Operation, str] = {}
        self._module: ModuleOp | None = None
        self._stage: tuple[str, str | None] = ("before", None)
        super().__init__(description=description, args=args)

    def register_all_dialects(self) -> None:
        super().register_all_dialects()
        for name, factory in all_dialects().items():
            self.ctx.register_dialect(name, factory)

    def register_all_passes(self) -> None:
        super().register_all_passes()
        for name, factory in all_passes().items():
            self.register_pass(name, factory)

    def register_all_arguments(self, arg_parser: argparse.ArgumentParser) -> None:
        super().register_all_arguments(arg_parser)
        arg_parser.add_argument(
            "--debug", action="store_true", help="Show Python tracebacks instead of one line."
        )

        def error(message: str) -> NoReturn:
            raise OptUsageError(message)

        arg_parser.error = error

    def register_all_frontends(self) -> None:
        super().register_all_frontends()

        def parse_mlir(io: IO[bytes]) -> ModuleOp:
            name = self.get_input_name()
            parser = _LocatingParser(self.ctx, _decode(io.read(), name, self._line_offset), name)
            module = parser.parse_module(not self.args.no_implicit_module)
            self._starts = {
                op: _span_where(span, self._line_offset) for op, span in parser.starts.items()
            }
            return module

        self.available_frontends["mlir"] = parse_mlir

    def parse_chunk(
        self, chunk: IO[bytes], file_extension: str, start_offset: int = 0
    ) -> ModuleOp | None:
        self._line_offset = start_offset
        self._module = None
        self._stage = ("before", None)
        return super().parse_chunk(chunk, file_extension, start_offset)

    def prepare_input(self) -> tuple[list[tuple[IO[bytes], int]], str]:
        try:
            return super().prepare_input()
        except OSError as error:
            raise OptUsageError(
                f"cannot read '{self.args.input_file}': {error.strerror or error}"
            ) from None
        except ValueError as error:  # an extension no frontend reads
            raise OptUsageError(f"{self.get_input_name()}: {error} (use -f mlir)") from None

    def prepare_output(self) -> IO[str]:
        try:
            return super().prepare_output()
        except OSError as error:
            raise OptUsageError(
                f"cannot write '{self.args.output_file}': {error.strerror or error}"
            ) from None

    def setup_pipeline(self) -> None:
        """Check the pipeline first, so an unknown pass or option is named in one line."""
        try:
            specs = list(parse_pipeline(self.args.passes))
        except ArgSpecParseError as error:
            detail = str(error).strip().splitlines()[-1].strip()
            raise OptUsageError(f"bad pass pipeline '{self.args.passes}': {detail}") from None
        for spec in specs:
            factory = self.available_passes.get(spec.name)
            if factory is None:
                close = difflib.get_close_matches(spec.name, self.available_passes, n=1)
                hint = f"did you mean '{close[0]}'?" if close else "see rdu-opt --help"
                raise OptUsageError(f"unknown pass '{spec.name}' ({hint})")
            _check_options(spec.name, factory(), spec)
        super().setup_pipeline()
        original = self.pipeline.callback
        self.pipeline = PassPipeline(self.pipeline.passes, self._callback(original))

    def _callback(
        self, original: Callable[[ModulePass | None, ModuleOp, ModulePass | None], None] | None
    ) -> Callable[[ModulePass | None, ModuleOp, ModulePass | None], None]:
        """Track which pass runs (for messages) around xdsl's verify-and-print callback."""

        def callback(prev: ModulePass | None, module: ModuleOp, next_: ModulePass | None) -> None:
            self._stage = ("after", prev.name if prev else None)
            if original is not None:
                original(prev, module, next_)
            self._stage = ("in", next_.name if next_ else None)

        return callback

    def apply_passes(self, prog: ModuleOp) -> None:
        self._module = prog
        super().apply_passes(prog)

    def run(self) -> None:
        try:
            super().run()
        except ParseError as error:
            raise IrError(_span_where(error.span), error.msg) from error
        except DiagnosticException as error:
            name = self.get_input_name()
            when, pass_name = self._stage
            if isinstance(error, VerifyException) and when != "in":
                located = verify_error(error, self._module, self._starts, name)
                if pass_name is not None:
                    located = IrError(located.where, f"{located.message} (after {pass_name})")
                raise located from error
            prefix = f"{pass_name}: " if pass_name else ""
            raise IrError(name, f"{prefix}{error}") from error
        except _user_errors() as error:
            when, pass_name = self._stage
            if when != "in" or pass_name is None or isinstance(error, IrError | OptUsageError):
                raise
            raise IrError(self.get_input_name(), f"{pass_name}: {error}") from error


def _check_options(name: str, pass_class: type[ModulePass], spec: ArgSpec) -> None:
    """An option the pass does not have, or a value of the wrong type, is an OptUsageError."""
    options = [f.name for f in dataclasses.fields(pass_class) if f.init and f.name != "name"]
    given = spec.normalize_parameter_names().parameters
    for option in given:
        if option not in options:
            known = ", ".join(o.replace("_", "-") for o in options) or "none"
            raise OptUsageError(f"pass '{name}' has no option '{option}' (options: {known})")
    try:
        pass_class.from_pass_spec(spec)
    except (ValueError, TypeError) as error:
        text = re.sub(r"<class '(\w+)'>", r"\1", " ".join(str(error).split()))
        raise OptUsageError(f"pass '{name}': {text}") from None


def _user_errors() -> tuple[type[BaseException], ...]:
    """Errors that are the input's fault (status 1): ours, the compiler's, the runtime's."""
    from compiler.targets import TargetError
    from runtime.errors import RduError

    return (IrError, OptUsageError, TargetError, RduError)


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        RduOptMain(description="RDU modular optimizer driver", args=args).run()
    except KeyboardInterrupt:
        if debug:
            raise
        _fail("rdu-opt: error: interrupted", 130)
    except Exception as error:
        if debug:
            raise
        text = " ".join(str(error).split()) or type(error).__name__
        if isinstance(error, IrError):
            _fail(text, 1)
        if isinstance(error, _user_errors()):
            _fail(f"rdu-opt: error: {text}", 1)
        _fail(
            f"rdu-opt: error: internal error: {type(error).__name__}: {text} (rerun with --debug)",
            2,
        )


def _fail(line: str, code: int) -> NoReturn:
    sys.stdout.flush()
    print(line, file=sys.stderr)
    sys.exit(code)


if __name__ == "__main__":
    main()
