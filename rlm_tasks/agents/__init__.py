"""The agent kinds rlm can run, one module each, registered in `KINDS`: every other room looks a kind up here.

A new kind is one module satisfying `base.AgentKind` and one line below. A module missing a member fails
here, at import, naming the kind and the member, never at run time.
"""

from __future__ import annotations

from rlm_tasks.agents import claude, codex, command, gemini, opencode
from rlm_tasks.agents.base import AgentKind


def _checked(*kinds: AgentKind) -> dict[str, AgentKind]:
    members = {*AgentKind.__annotations__, *(n for n in vars(AgentKind) if not n.startswith("_"))}
    table: dict[str, AgentKind] = {}
    for kind in kinds:
        missing = sorted(name for name in members if not hasattr(kind, name))
        if missing:
            raise TypeError(f"agent kind {getattr(kind, '__name__', kind)!r} lacks {', '.join(missing)}")
        if kind.NAME in table:
            raise TypeError(f"agent kind '{kind.NAME}' is registered twice")
        table[kind.NAME] = kind
    return table


KINDS: dict[str, AgentKind] = _checked(codex, claude, gemini, opencode, command)


def kind_of(name: str) -> AgentKind:
    """The kind named `name` (the schema allows only names of KINDS)."""
    return KINDS[name]
