"""Every Redis key has one definition (keys.py), and the Lua scripts can only use it.

The scripts' key helpers are generated from keys.py when the scripts are registered, so
these tests check, without Redis: that every helper a script calls is generated; that no
script builds a key by hand; that each generated helper builds the same key as its Python
twin; and that every script file is registered.
"""
from __future__ import annotations

import ast
import re
from importlib import resources

import pytest

from framefarm.gateway import keys, scripts

LUA = resources.files("framefarm.gateway").joinpath("lua")
SCRIPTS = {p.name: p.read_text() for p in LUA.iterdir() if p.name.endswith(".lua")}
PRELUDE = keys.lua_prelude()
_DEFINED = re.compile(r"^local (?:function )?([A-Za-z_]\w*)", re.M)
_KEY_NAME = re.compile(r"\b([kK]_\w+)\b")


def lua_key(helper: str, *args: str) -> str:
    """What a generated helper returns for `args`, read from its generated Lua text."""
    line = next(line for line in PRELUDE.splitlines() if re.match(rf"local (function )?{helper}\b", line))
    expr = line.split(" return ", 1)[1].removesuffix(" end") if "function" in line else line.split(" = ", 1)[1]
    values = {"P": keys.PREFIX, **{f"a{i}": a for i, a in enumerate(args, 1)}}
    return "".join(values[t] if t in values else ast.literal_eval(t) for t in expr.split(" .. "))


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_every_key_helper_a_script_uses_is_generated_from_keys_py(name):
    defined = set(_DEFINED.findall(PRELUDE)) | set(_DEFINED.findall(SCRIPTS["_lib.lua"]))
    used = set(_KEY_NAME.findall(re.sub(r"--.*", "", SCRIPTS[name])))
    assert used - defined == set(), f"{name} uses key helpers keys.py does not generate"


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_no_script_builds_a_key_by_hand(name):
    code = re.sub(r"--.*", "", SCRIPTS[name])
    assert not re.search(r"\bP\s*\.\.|'ff:", code), f"{name} builds a key itself: declare it in keys.py"


def test_each_generated_helper_builds_the_key_its_python_twin_builds():
    builders = [v for v in vars(keys).values() if isinstance(v, keys.Key)]
    assert len(builders) >= 15
    for builder in builders:
        args = [f"x{i}" for i in range(builder.slots)]
        assert lua_key(builder.lua_name, *args) == builder(*args)
    for name in ("LEASES", "QUEUES", "STAGING", "FILE_REFS", "EVENTS", "WORKERS", "FENCE", "SEQ"):
        assert lua_key("K_" + name) == getattr(keys, name)


def test_every_script_file_is_registered():
    source = resources.files("framefarm.gateway").joinpath("scripts.py").read_text()
    registered = set(re.findall(r'load\("(\w+)"\)', source))
    assert registered == {n for n in scripts.script_names() if n != "_lib"}


def test_a_key_builder_refuses_the_wrong_number_of_parts():
    with pytest.raises(TypeError):
        keys.idempotency("owner")
    assert keys.idempotency("owner", "k") == "ff:idem:owner:k"
