"""packaging/build_addon.py bundles exactly the repository modules the add-on imports,
and what those import in turn: never a hand-kept list that drifts from the code."""
from __future__ import annotations

import importlib.util
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def build_addon():
    # Loaded from its file: packaging/ must never be importable as `packaging`.
    spec = importlib.util.spec_from_file_location("build_addon", REPO / "packaging" / "build_addon.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_addon(tmp_path: Path, **files: str) -> Path:
    addon = tmp_path / "framefarm_addon"
    addon.mkdir()
    (addon / "__init__.py").write_text("")
    for name, text in files.items():
        (addon / f"{name}.py").write_text(text)
    return addon


def test_what_the_add_on_imports_is_followed_through_the_repository(build_addon, tmp_path, monkeypatch):
    monkeypatch.setattr(build_addon, "ADDON", fake_addon(
        tmp_path, tasks="from ._vendor.framefarm.common.api import FarmAPI\n",
        props="def f():\n    from ._vendor.framefarm.common import frameset\n"))
    assert sorted(build_addon.repo_modules()) == [
        "framefarm.common", "framefarm.common.api", "framefarm.common.api_types",  # api imports .api_types
        "framefarm.common.frameset", "framefarm.common.http"]  # and .http


def test_an_import_the_repository_cannot_satisfy_stops_the_build(build_addon, tmp_path, monkeypatch):
    monkeypatch.setattr(build_addon, "ADDON", fake_addon(tmp_path, tasks="from ._vendor.framefarm.nowhere import x\n"))
    with pytest.raises(SystemExit, match="framefarm.nowhere"):
        build_addon.repo_modules()


def test_the_real_add_on_gets_a_self_contained_client_and_nothing_it_does_not_use(build_addon, tmp_path):
    modules = build_addon.repo_modules()
    assert {"framefarm.client.packing", "framefarm.client.submission", "framefarm.common.http"} <= set(modules)
    # $FRAMEFARM_HOME config, the command line and the farm's own roles stay out of Blender.
    assert not [m for m in modules if m in ("framefarm.client.config", "framefarm.common.home")
                or m.split(".")[1] in ("cli", "worker", "gateway")]
    for module, path in modules.items():
        for imported in build_addon._imports(path, module):
            if imported.startswith("framefarm.") and build_addon._module_file(imported):
                assert imported in modules, f"{module} imports {imported}, which the zip would lack"
    archive = build_addon.build(tmp_path / "addon.zip")
    with zipfile.ZipFile(archive) as zf:
        vendored = {n.removeprefix("framefarm_addon/_vendor/") for n in zf.namelist()
                    if n.startswith("framefarm_addon/_vendor/framefarm/")}
    expected = {p.relative_to(root).as_posix() for p in modules.values()
                for root in build_addon.SOURCE_ROOTS if p.is_relative_to(root)}
    assert vendored == expected | {"framefarm/__init__.py"}
