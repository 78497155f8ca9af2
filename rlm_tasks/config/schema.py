"""JSON Schemas under schemas/: loading them and turning violations into readable problems."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlm_tasks import jsonio
from rlm_tasks.config.yamlpos import KeyPath, format_path
from rlm_tasks.errors import UserError, close_match
from rlm_tasks.resources import SCHEMA_DIR

if TYPE_CHECKING:
    import jsonschema
    from referencing import Registry


_TYPE_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "array": "a list",
    "object": "a mapping",
    "null": "null",
}


@functools.cache
def _registry() -> Registry:
    """Every schema under schemas/ by its $id, so `$ref`s between them resolve offline."""
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    resources = []
    for path in sorted(SCHEMA_DIR.glob("*.schema.json")):
        contents = json.loads(path.read_text(encoding="utf-8"))
        resources.append((contents["$id"], Resource.from_contents(contents, default_specification=DRAFT202012)))
    return Registry().with_resources(resources)


@functools.cache
def validator(name: str) -> jsonschema.Draft202012Validator:
    import jsonschema  # imported when needed: a cached, unchanged rlm.yaml is not validated again (bench/)

    schema = json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema, registry=_registry())


def describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    kind = {str: "a string", int: "an integer", float: "a number"}.get(type(value), type(value).__name__)
    shown = json.dumps(value) if isinstance(value, (str, int, float)) else ""
    return f"{kind} ({shown[:40]})" if shown else kind


def suggest(word: str, choices: Any) -> str:
    """' (did you mean 'x'?)' when a close match exists, else ''."""
    match = close_match(word, choices)
    return f" (did you mean '{match}'?)" if match else ""


def problems(name: str, instance: Any) -> Iterator[tuple[KeyPath, str, bool]]:
    """Yield (path, message, points_at_key) for every violation, in document order."""
    errors = sorted(validator(name).iter_errors(instance), key=lambda e: [str(p) for p in e.absolute_path])
    for error in errors:
        path: KeyPath = tuple(error.absolute_path)
        kind = error.validator
        if kind == "additionalProperties" and isinstance(error.instance, dict):
            known = error.schema.get("properties", {})
            for key in error.instance:
                if key not in known:
                    yield (*path, key), f"unknown key '{key}'{suggest(key, known)}", True
        elif kind == "required":
            missing = error.message.split("'")[1] if "'" in error.message else error.message
            yield path, f"missing required key '{missing}'", False
        elif kind == "type":
            wanted = error.validator_value
            wanted_list = wanted if isinstance(wanted, list) else [wanted]
            names = " or ".join(_TYPE_NAMES.get(str(w), str(w)) for w in wanted_list)
            yield path, f"expected {names}, got {describe(error.instance)}", False
        elif kind == "enum":
            choices = ", ".join(str(c) for c in error.validator_value)
            hint = (
                suggest(error.instance, [str(c) for c in error.validator_value])
                if isinstance(error.instance, str)
                else ""
            )
            yield path, f"must be one of: {choices}; got {describe(error.instance)}{hint}", False
        elif kind == "const":
            yield path, f"must be {json.dumps(error.validator_value)}; got {describe(error.instance)}", False
        elif kind == "pattern":
            yield path, f"{json.dumps(error.instance)} does not match the pattern {error.validator_value}", False
        elif kind in ("minimum", "exclusiveMinimum"):
            op = ">=" if kind == "minimum" else ">"
            yield path, f"must be {op} {error.validator_value}; got {error.instance}", False
        elif kind in ("maximum", "exclusiveMaximum"):
            op = "<=" if kind == "maximum" else "<"
            yield path, f"must be {op} {error.validator_value}; got {error.instance}", False
        elif kind == "maxLength":
            yield path, f"longer than {error.validator_value} characters ({len(error.instance)})", False
        elif kind == "minLength":
            yield path, f"must be at least {error.validator_value} characters long", False
        else:
            yield path, error.message, False


def check(name: str, instance: Any) -> list[str]:
    """Plain messages for an artifact (used by tests and `rlm` self-checks)."""
    return [f"{format_path(path)}: {message}" for path, message, _ in problems(name, instance)]


class StateFileInvalid(UserError):
    """A file under .rlm/ (which any worker can write) does not match its schema."""


def read_state(path: Path, name: str, default: Any = None) -> Any:
    """The JSON file at `path` checked against schemas/`name`.schema.json: `default` when it does not exist,
    StateFileInvalid naming the file and its first problem when it is not JSON or does not match. Every file
    under the repository is worker-writable: nothing read from one is trusted before this check."""
    try:
        data = jsonio.read_json(path, default=_MISSING)
    except (ValueError, UnicodeDecodeError) as exc:
        raise StateFileInvalid(f"{path}: not valid JSON ({exc}); not used") from None
    except OSError as exc:
        raise StateFileInvalid(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if data is _MISSING:
        return default
    found = check(name, data)
    if found:
        raise StateFileInvalid(f"{path}: does not match {name}.schema.json ({found[0]}); not used")
    return data


_MISSING = object()
