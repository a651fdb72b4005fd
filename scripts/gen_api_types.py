"""Write common/framefarm/common/api_types.py: the API's JSON bodies as TypedDicts, from openapi.yaml.

The gateway checks every request against openapi.yaml (framefarm/gateway/contract.py); the
client's types come from the same file, so a field added to the spec shows up in the client's
annotations, and `tests/unit/test_api_types.py` fails until this is run again:

    python scripts/gen_api_types.py            # rewrite the module
    python scripts/gen_api_types.py --check    # exit 1 if it is out of date

Each object schema of `components/schemas` becomes a TypedDict of the same name; an operation's
inline JSON request body becomes `<OperationId>Request` and its inline success answer
`<OperationId>Reply`; an inline object inside either is named after its parent and field.
Optional fields are `NotRequired`; a type list with "null" is `X | None`. Field descriptions
stay in the spec (served at GET /v1/openapi.yaml), where they are kept.
"""
from __future__ import annotations

import argparse
import keyword
import re
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
SPEC = REPO / "backend" / "framefarm" / "gateway" / "openapi.yaml"
OUT = REPO / "common" / "framefarm" / "common" / "api_types.py"
SCALARS = {"string": "str", "integer": "int", "number": "float", "boolean": "bool", "null": "None"}

HEADER = '''"""The gateway API's JSON bodies as TypedDicts. Generated from openapi.yaml by
scripts/gen_api_types.py: do not edit; change the spec and run the script again."""
# No `from __future__ import annotations`: TypedDict reads NotRequired only from evaluated
# annotations, so every name is defined before it is used.
from typing import {imports}

__all__ = [
{names}
]
'''


def pascal(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^0-9A-Za-z]+", name) if part)


class Generator:
    def __init__(self, spec: dict) -> None:
        self.spec = spec
        self.classes: dict[str, str] = {}  # name -> source, in the order written

    def type_of(self, schema: dict, name: str) -> str:
        """The annotation for `schema`; an inline object becomes a class called `name`."""
        if "$ref" in schema:
            return schema["$ref"].rsplit("/", 1)[1]
        if "const" in schema:
            return f"Literal[{schema['const']!r}]"
        if "enum" in schema:
            return f"Literal[{', '.join(repr(v) for v in schema['enum'])}]"
        for key in ("oneOf", "anyOf"):
            if key in schema:
                options = [self.type_of(s, f"{name}{i}") for i, s in enumerate(schema[key], 1)]
                return " | ".join(dict.fromkeys(options))
        types = schema.get("type", "any")
        if isinstance(types, list):
            return " | ".join(self.type_of({**schema, "type": t}, name) for t in types)
        if types == "array":
            return f"list[{self.type_of(schema.get('items', {}), name + 'Item')}]"
        if types == "object":
            if "properties" in schema:
                return self.typed_dict(name, schema)
            extra = schema.get("additionalProperties")
            return f"dict[str, {self.type_of(extra, name + 'Value')}]" if isinstance(extra, dict) else \
                "dict[str, Any]"
        return SCALARS.get(types, "Any")

    def typed_dict(self, name: str, schema: dict) -> str:
        required = set(schema.get("required", []))
        fields = []
        for field, sub in schema["properties"].items():
            annotation = self.type_of(sub, name + pascal(field))
            fields.append((field, annotation if field in required else f"NotRequired[{annotation}]",
                           sub.get("description", "")))
        doc = " ".join(str(schema.get("description", "")).split())
        if all(f.isidentifier() and not keyword.iskeyword(f) for f, _, _ in fields):
            body = [f'    """{doc}"""'] if doc else []
            body += [f"    {field}: {annotation}" for field, annotation, _ in fields]
            source = f"class {name}(TypedDict):\n" + ("\n".join(body) if body else "    pass") + "\n"
        else:  # a field Python cannot name
            items = ", ".join(f"{f!r}: {a}" for f, a, _ in fields)
            source = f"{name} = TypedDict({name!r}, {{{items}}})\n"
        self.classes.setdefault(name, source)
        return name

    def run(self) -> str:
        for name, schema in self.spec["components"]["schemas"].items():
            if schema.get("type") == "object" and "properties" in schema:
                self.typed_dict(name, schema)
            else:
                self.classes.setdefault(name, f"{name}: TypeAlias = {self.type_of(schema, name)}\n")
        for item in self.spec["paths"].values():
            for operation in item.values():
                if not isinstance(operation, dict) or "operationId" not in operation:
                    continue
                op = pascal(operation["operationId"])
                body = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
                if "properties" in body.get("schema", {}):
                    self.typed_dict(op + "Request", body["schema"])
                for status, answer in operation.get("responses", {}).items():
                    schema = answer.get("content", {}).get("application/json", {}).get("schema", {})
                    if status.startswith("2") and "properties" in schema:
                        self.typed_dict(op + "Reply", schema)
                        break
        order = self.ordered()
        names = "\n".join(f'    "{n}",' for n in order)
        body = "".join(f"\n\n{self.classes[n]}" for n in order)
        imports = ", ".join(n for n in ("Any", "Literal", "NotRequired", "TypeAlias", "TypedDict")
                            if re.search(rf"\b{n}\b", body))
        return HEADER.format(names=names, imports=imports) + body

    def ordered(self) -> list[str]:
        """Every name after the names it uses (the spec's order otherwise); the spec has no cycles."""
        done: list[str] = []

        def visit(name: str, path: tuple[str, ...]) -> None:
            if name in done:
                return
            if name in path:
                raise SystemExit(f"openapi.yaml: {' -> '.join(path + (name,))} refers to itself")
            source = re.sub(r'""".*?"""', "", self.classes[name], flags=re.S)  # docstrings name no types
            for used in re.findall(r"\b[A-Z][A-Za-z0-9]*\b", source.split(":", 1)[1]):
                if used in self.classes and used != name:
                    visit(used, path + (name,))
            done.append(name)

        for name in self.classes:
            visit(name, ())
        return done


def generate(spec_path: Path = SPEC) -> str:
    return Generator(yaml.safe_load(spec_path.read_text())).run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if api_types.py is out of date")
    args = parser.parse_args(argv)
    text = generate()
    if args.check:
        if OUT.read_text() != text:
            print(f"{OUT.relative_to(REPO)} is out of date: run python scripts/gen_api_types.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
