"""The client's types are generated from openapi.yaml, the description the gateway checks
requests against: the checked-in module must be what the generator writes today."""
from __future__ import annotations

import importlib.util
import sys
import typing

from farmtools import REPO

from framefarm.common import api_types


def generator():
    spec = importlib.util.spec_from_file_location("gen_api_types", REPO / "scripts" / "gen_api_types.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_api_types"] = module
    spec.loader.exec_module(module)
    return module


def test_api_types_are_what_the_spec_generates():
    gen = generator()
    assert gen.OUT.read_text() == gen.generate(), "run: python scripts/gen_api_types.py"


def test_a_change_to_the_spec_changes_the_generated_types(tmp_path):
    """The check above can fail: a field added to a schema shows up in its TypedDict."""
    gen = generator()
    changed = tmp_path / "openapi.yaml"
    changed.write_text(gen.SPEC.read_text().replace(
        "    Lease:\n      type: object\n", "    Lease:\n      type: object\n      x-note: none\n", 1).replace(
        "        attempts: {type: integer, minimum: 0, description: Earlier attempts",
        "        gpu: {type: boolean}\n        attempts: {type: integer, minimum: 0, description: Earlier attempts", 1))
    text = gen.generate(changed)
    assert text != gen.generate() and "    gpu: NotRequired[bool]\n" in text


def test_the_types_read_as_the_spec_says():
    hints = typing.get_type_hints(api_types.Lease)
    assert hints["token"] is str and hints["span"] is api_types.PartSpan
    assert api_types.Lease.__required_keys__ >= {"id", "token", "span", "frames"}
    assert "download_url" in api_types.Job.__optional_keys__ and "status" in api_types.Job.__required_keys__
    assert typing.get_args(typing.get_type_hints(api_types.Job)["status"]) == (
        "queued", "running", "assembling", "estimated", "done", "failed", "cancelled", "expired")
