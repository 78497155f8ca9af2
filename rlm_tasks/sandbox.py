"""The one Jinja2 environment rlm renders with: sandboxed, StrictUndefined.

Every template rlm renders comes from rlm.yaml, a `templates_dir` or a value a
worker can change, so none may run code: Jinja's ImmutableSandboxedEnvironment
refuses attributes such as `__globals__` and calls that mutate, and rlm turns
such a refusal into one line naming the template (exit 2), never a traceback.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jinja2


# A rendered value longer than this is refused: `{{ "a" * 10**10 }}` would take the machine's memory.
MAX_PRODUCT = 10_000_000
MAX_EXPONENT = 10_000

_class: Any = None


def _environment_class() -> Any:
    global _class
    if _class is None:
        from jinja2.exceptions import SecurityError
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        class Bounded(ImmutableSandboxedEnvironment):
            """The sandbox, with `*` and `**` bounded (Jinja's own sandbox bounds only range())."""

            intercepted_binops = frozenset(["*", "**"])

            def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
                if operator == "**" and isinstance(right, (int, float)) and abs(right) > MAX_EXPONENT:
                    raise SecurityError(f"exponent {right} is larger than {MAX_EXPONENT}")
                if operator == "*":
                    for seq, times in ((left, right), (right, left)):
                        if (isinstance(seq, (str, bytes, list, tuple)) and isinstance(times, int)
                                and len(seq) * times > MAX_PRODUCT):
                            raise SecurityError(f"a repeated value longer than {MAX_PRODUCT} items")
                return super().call_binop(context, operator, left, right)

        _class = Bounded
    return _class


def environment(**options: Any) -> jinja2.Environment:
    """A sandboxed environment with StrictUndefined and no autoescaping, unless `options` say otherwise."""
    import jinja2  # imported when needed: a no-op run renders nothing (bench/)

    options.setdefault("undefined", jinja2.StrictUndefined)
    options.setdefault("autoescape", False)  # Markdown and argv, not HTML: escaping is done by filters
    env: jinja2.Environment = _environment_class()(**options)
    return env


def is_violation(exc: BaseException) -> bool:
    """True when `exc` is the sandbox refusing something (reported as such, not as a template bug)."""
    from jinja2.exceptions import SecurityError

    return isinstance(exc, SecurityError)


def violation(where: str, exc: BaseException) -> str:
    """The one line a sandbox refusal is reported in."""
    return f"{where}: template refused by the sandbox (templates cannot run code): {exc}"


def template_line(exc: BaseException, filename: str | None = None) -> int | None:
    """The template line an error was raised at: Jinja rewrites the traceback so that a template's frames carry
    the template's file name (or `<template>` for a string) and line."""
    found = None
    tb = exc.__traceback__
    while tb is not None:
        name = tb.tb_frame.f_code.co_filename
        if name == "<template>" or (filename is not None and name == filename):
            found = tb.tb_lineno
        tb = tb.tb_next
    return found
