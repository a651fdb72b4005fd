"""Every request is checked against openapi.yaml, the one description of the API.

The spec says what each operation takes (path and query parameters, headers, a JSON
body); `install` adds a hook that checks each request against it with openapi-core's
deserialisers, casters and OAS 3.1 schema validators before the view runs, so a view
only ever sees input of the described shape. Checks a schema cannot express (a main
file that is not in the manifest, a .blend that is not a .blend, a size over this
farm's limit, a stale lease) stay in the domain code.

openapi-core builds its validators anew for every request, and follows each `$ref` through
its own resolver as it validates (milliseconds a request); claims and heartbeats are hot
paths, so each operation's validators are built once per process, on its first request,
from its schemas with their references inlined (the spec has no recursive ones).

A refusal has the project's error shape, with the status and code the spec chooses: the
nearest `x-error-status` (400 unless said) and `x-error-code` (`bad_request` unless said)
on the failing schema or its parents; the message is the failing schema's
`x-error-message` (`{value}` is the offending value) or else names the field and what is
wrong with it. A request that is both malformed and unauthorised is answered 401/403.

Streamed bodies (file and result uploads) are never read here: only their parameters are
checked; their bytes are the views' business. Fields a JSON body does not describe are
ignored, so a newer client can talk to an older gateway.
"""
from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any, Callable, Iterator, Mapping

import yaml
from flask import Flask, Request, current_app, request
from jsonschema.exceptions import ValidationError as SchemaError
from jsonschema.validators import extend
from jsonschema_path import SchemaPath
from openapi_core.deserializing.styles.deserializers import StyleDeserializer
from openapi_core.schema.parameters import get_style_and_explode
from openapi_core.validation.request.validators import V31RequestValidator
from openapi_core.validation.schemas.exceptions import InvalidSchemaValue
from openapi_core.validation.schemas.factories import SchemaValidatorsFactory
from openapi_core.validation.schemas.validators import SchemaValidator
from openapi_schema_validator import OAS30ReadValidator, OAS31Validator
from werkzeug.exceptions import MethodNotAllowed

from .errors import ApiError

JSON = "application/json"
_FLASK_ARG = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_REQUIRED = re.compile(r"'(.+)' is a required property")
_METHODS = {"get", "put", "post", "delete", "patch"}
_MAX_SHOWN = 180  # characters of an offending value quoted back in a message
MAX_DEPTH = 32  # arrays and objects in a JSON body; the API's own bodies nest a few levels deep


def _whole(_checker: Any, instance: Any) -> bool:
    """JSON Schema counts 2.0 as an integer; the farm has always read a whole number as a JSON
    integer (no fraction, no exponent), and its views refuse 2.0 where they want one."""
    return isinstance(instance, int) and not isinstance(instance, bool)


@functools.lru_cache(maxsize=None)
def _ecma_regex(pattern: str) -> re.Pattern[str]:
    """A spec pattern as JSON Schema reads it (ECMA-262): there `$` is the end of the text,
    while Python's `$` also matches before a final newline, so "<sha>\\n" would pass a
    `^[0-9a-f]{64}$`. Each `$` outside a character class becomes Python's `\\Z`."""
    out, in_class, escaped = [], False, False
    for ch in pattern:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "[":
            in_class = True
        elif ch == "]":
            in_class = False
        elif ch == "$" and not in_class:
            ch = r"\Z"
        out.append(ch)
    return re.compile("".join(out))


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[SchemaError]:
    if validator.is_type(instance, "string") and not _ecma_regex(pattern).search(instance):
        yield SchemaError(f"{instance!r} does not match {pattern!r}")


# openapi-core's OAS 3.1 validators (and its format checks), with that one reading of
# "integer" and ECMA-262's reading of a pattern's `$`.
_VALIDATORS = SchemaValidatorsFactory(
    extend(OAS31Validator, validators={"pattern": _pattern},
           type_checker=OAS31Validator.TYPE_CHECKER.redefine("integer", _whole)),
    format_checker=OAS30ReadValidator.FORMAT_CHECKER)


class TooDeep(ValueError):
    """A JSON body nested past MAX_DEPTH."""


class BadText(ValueError):
    """A JSON body with a string that is not text (a lone surrogate)."""


def _strict_json(value: bytes) -> Any:
    """JSON as RFC 8259 has it: NaN and Infinity are not numbers a client can send; nor is
    nesting past MAX_DEPTH (json.loads recurses: 50,000 `[` raised RecursionError, a 500)."""
    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")
    try:
        parsed = json.loads(value, parse_constant=refuse)
    except RecursionError:
        raise TooDeep(f"the body nests deeper than {MAX_DEPTH} levels") from None
    if _depth(parsed) > MAX_DEPTH:
        raise TooDeep(f"the body nests deeper than {MAX_DEPTH} levels")
    return parsed


# A `\ud800` escape with no partner: json.loads accepts it, but the string is not text; it
# could not be encoded as UTF-8 for Redis (a job named with one was a 500).
_SURROGATE = re.compile("[\ud800-\udfff]")


def _depth(value: Any) -> int:
    """How deep arrays and objects nest in `value`, counted without recursing. A body that
    json.loads just managed to read could still overflow the stack when the view reads it
    again a few frames deeper, so the limit is a fixed number, far below Python's.
    The same walk refuses strings (keys too) holding a lone surrogate (BadText)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict):
            stack.extend((key, level) for key in node)
        if isinstance(node, str) and _SURROGATE.search(node):
            raise BadText("the body holds a lone UTF-16 surrogate escape (\\ud800-\\udfff), which is not text")
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is not None:
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in children)
    return deepest


def _reader(d: StyleDeserializer) -> Callable[[Mapping[str, Any]], Any]:
    """What `d.deserialize` does, with the parameter's caster made once: openapi-core's reads the
    schema's type through jsonschema-path and builds a caster on every call, a tenth of a
    claim+result cycle's CPU. The same values come out, and the same errors (the caller takes
    any exception for a value not of the schema's type)."""
    loads = d.deserializer_callable
    if loads is None:  # a style openapi-core does not know: it warns and passes the value as it is
        return d.deserialize
    cast = d.caster.get_type_caster((d.caster.schema / "type").read_str(None))

    def read(given: Mapping[str, Any]) -> Any:
        value = loads(d.explode, d.name, d.schema_type, given)
        return None if value is None else cast(value)
    return read


@dataclass(frozen=True)
class Param:
    name: str
    location: str  # path, query or header
    required: bool
    raw: dict  # as written in openapi.yaml
    read: Callable[[Mapping[str, Any]], Any]  # its value, deserialised and cast (_reader)
    validator: SchemaValidator

    @property
    def label(self) -> str:
        return f"header {self.name}" if self.location == "header" else f"{self.location} parameter {self.name}"


@dataclass(frozen=True)
class Operation:
    """One operation of the spec with its validators, built once per process."""
    path: str
    method: str
    params: tuple[Param, ...]
    body_schema: dict | None  # the JSON body's schema as written; None where the body is not JSON
    body_required: bool
    body_validator: SchemaValidator | None


class Contract:
    """openapi.yaml, loaded once per process; operations compiled on first use."""

    def __init__(self, spec: dict) -> None:
        self.spec = spec
        # openapi-core's factories (casters, style and media-type deserialisers, OAS 3.1 schema validators).
        self._core = V31RequestValidator(SchemaPath.from_dict(spec))
        self._ops: dict[tuple[str, str], Operation | None] = {}
        # Paths without parameters, and their methods: `PUT /v1/files/missing` must not pass for
        # an upload to `PUT /v1/files/{sha}`, whose route also matches it.
        self.fixed_paths = {path: {m.upper() for m in item if m in _METHODS}
                            for path, item in spec["paths"].items() if "{" not in path}

    @classmethod
    @functools.cache
    def packaged(cls) -> "Contract":
        return cls(yaml.safe_load(resources.files("framefarm.gateway").joinpath("openapi.yaml").read_text()))

    def operation(self, rule: str, method: str) -> Operation | None:
        """The spec's operation for a Flask route and method; None where it describes none."""
        key = (rule, method)
        if key not in self._ops:
            self._ops[key] = self._compile(_FLASK_ARG.sub(r"{\1}", rule), method)
        return self._ops[key]

    def _compile(self, path: str, method: str) -> Operation | None:
        item = self.spec["paths"].get(path, {})
        raw = item.get(method)
        if raw is None:
            return None
        core = self._core
        params = []
        for p in raw.get("parameters", []) + item.get("parameters", []):
            p = self.inline(p)
            at = SchemaPath.from_dict(p)
            style, explode = get_style_and_explode(at)
            params.append(Param(p["name"], p["in"], bool(p.get("required")), p,
                                _reader(core.style_deserializers_factory.create(at, at / "schema", style, explode,
                                                                                name=p["name"])),
                                _VALIDATORS.create(at, at / "schema")))
        body = raw.get("requestBody", {})
        schema = body.get("content", {}).get(JSON, {}).get("schema")
        validator = None
        if schema is not None:
            schema = self.inline(schema)
            validator = _VALIDATORS.create(SchemaPath.from_dict(schema), SchemaPath.from_dict(schema))
        return Operation(path, method, tuple(params), schema, bool(body.get("required")), validator)

    def inline(self, node: Any) -> Any:
        """`node` with every local `$ref` replaced by what it names (its siblings kept)."""
        if isinstance(node, list):
            return [self.inline(x) for x in node]
        if not isinstance(node, dict):
            return node
        out = {k: self.inline(v) for k, v in node.items() if k != "$ref"}
        if "$ref" in node:
            return {**self.inline(self.resolve({"$ref": node["$ref"]})), **out}
        return out

    # -- checking a request -----------------------------------------------------------------------
    def check(self, op: Operation, req: Request) -> None:
        """Raise the ApiError for the first way `req` breaks the spec, if it does."""
        if op.params:
            # Werkzeug's Headers is a mapping in all but name (case-insensitive, as headers are).
            given: dict[str, Any] = {"path": req.view_args or {}, "query": req.args, "header": req.headers,
                                     "cookie": req.cookies}
            for p in op.params:
                self._check_param(p, given[p.location])
        if op.body_schema is not None:
            self._check_body(op, req)

    def _check_param(self, p: Param, given: Mapping[str, Any]) -> None:
        if p.name not in given:
            if p.required:
                raise ApiError(400, "bad_request", f"{p.label} is required")
            return
        raw_value = given.get(p.name)
        schema = p.raw.get("schema", {})
        try:
            value = p.read(given)
        except Exception:  # openapi-core's DeserializeError or CastError: not of the schema's type
            raise self._answer([schema], None, f"{p.label} must be a {schema.get('type', 'value')}, "
                               f"got {_short(repr(raw_value))}", raw_value) from None
        if p.location == "query" and raw_value == "":
            raise ApiError(400, "bad_request", f"{p.label} is empty")
        try:
            p.validator.validate(value)
        except InvalidSchemaValue as e:
            raise self._schema_refusal(schema, list(e.schema_errors), p.label) from None

    def _check_body(self, op: Operation, req: Request) -> None:
        data = req.get_data(cache=True)  # capped before this runs (app.py)
        if not data:
            if op.body_required:
                raise ApiError(400, "bad_request", "this request needs a JSON body")
            return
        if req.mimetype != JSON:
            raise ApiError(415, "unsupported_media_type",
                           f"send the body as {JSON}, not {req.mimetype or 'without a Content-Type'}")
        assert op.body_validator is not None
        try:
            value = _strict_json(data)
        except (TooDeep, BadText) as e:
            raise ApiError(400, "bad_request", str(e)) from None
        except ValueError:  # UnicodeDecodeError and JSONDecodeError included
            raise ApiError(400, "bad_request", "the body is not valid JSON") from None
        # Only the first error, never all of them: jsonschema checks a schema's keywords in the
        # order written, so an array past its `maxItems` (written before `items`) is refused
        # before any item is looked at. Collecting every error (openapi-core's `validate`) checked
        # each of 180,000 heartbeat entries before refusing the list: 18 s of a gateway's CPU.
        error = next(op.body_validator.validator.iter_errors(value), None)
        if error is not None:
            raise self._schema_refusal(op.body_schema or {}, [error], "")

    # -- wording a refusal ------------------------------------------------------------------------
    def _schema_refusal(self, root: dict, errors: list[SchemaError], prefix: str) -> ApiError:
        error = errors[0]
        chain = self._chain(root, list(error.relative_schema_path)[:-1])
        leaf = error.schema if isinstance(error.schema, dict) else None
        if leaf is not None and leaf is not chain[-1]:
            chain.append(leaf)
        field = _field(prefix, error.absolute_path)
        missing = _REQUIRED.fullmatch(error.message)
        if not field and error.validator == "type":
            default = f"the body must be a JSON {error.validator_value}"
        elif error.validator == "required" and missing:
            default = f"{field + '.' if field else ''}{missing[1]} is required"
        else:
            default = f"{field or 'the body'}: {_short(error.message)}"
        return self._answer(chain, leaf, default, error.instance, field)

    def _answer(self, chain: list[dict], leaf: dict | None, default: str, value: Any, field: str = "") -> ApiError:
        code, status = "bad_request", 400
        for schema in chain:
            code = schema.get("x-error-code", code)
            status = schema.get("x-error-status", status)
        template = (leaf if leaf is not None else chain[-1]).get("x-error-message")
        message = template.format(field=field, value=_short(repr(value))) if template else default
        return ApiError(status, code, message)

    @staticmethod
    def _chain(root: dict, schema_path: list[Any]) -> list[dict]:
        """The schemas from `root` (inlined) down a jsonschema error's schema path."""
        node: Any = root
        chain = [node]
        for key in schema_path:
            try:
                node = node[key]
            except (KeyError, IndexError, TypeError):
                break
            if isinstance(node, dict):
                chain.append(node)
        return chain

    def resolve(self, node: Any) -> Any:
        """Follow local `$ref`s ("#/components/...") to what they name."""
        while isinstance(node, dict) and str(node.get("$ref", "")).startswith("#/"):
            target: Any = self.spec
            for part in node["$ref"][2:].split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            node = target
        return node


def _field(prefix: str, path: Any) -> str:
    """`parts[0].token`, `manifest['a b']`: where in the body (or which parameter) it went wrong."""
    out = prefix
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _NAME.fullmatch(str(part)):
            out += f".{part}" if out else str(part)
        else:
            out += f"[{_short(repr(part))}]"
    return out


def _short(text: str) -> str:
    return text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN] + "..."


def install(app: Flask, contract: Contract | None = None) -> None:
    """Check every request that an operation of the spec describes, before its view runs."""
    checker = contract or Contract.packaged()
    app.extensions["framefarm.contract"] = checker

    @app.before_request
    def _check_contract():
        rule = request.url_rule
        if rule is None:  # no route: routing answers 404 or 405 itself
            return
        allowed = checker.fixed_paths.get(request.path)
        # A fixed path caught by a parameter's route, or asked its methods (Flask would list the routes'):
        if allowed is not None and (rule.rule != request.path or request.method == "OPTIONS"):
            allowed = allowed | {"OPTIONS"} | ({"HEAD"} if "GET" in allowed else set())
            if request.method == "OPTIONS":
                resp = current_app.response_class()
                resp.allow.update(allowed)
                return resp
            if request.method not in allowed:
                raise MethodNotAllowed(sorted(allowed))
        op = checker.operation(rule.rule, request.method.lower())
        if op is None:
            return
        # The token before the body: a request that is both malformed and unauthorised is
        # answered 401/403, and nobody without a token makes a gateway read and check a body of
        # up to 16 MiB (seconds of its CPU) only to be refused.
        _authorize_first()
        checker.check(op, request)


def _authorize_first() -> None:
    """401/403 where the request's token would not pass the view's check (the view reuses
    the identity found here: auth.authorize)."""
    from .auth import authorize

    roles = getattr(current_app.view_functions.get(request.endpoint or ""), "roles", None)
    if roles:
        authorize(roles)
