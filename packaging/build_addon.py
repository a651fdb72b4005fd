"""Build the Blender add-on zip: one top-level folder `framefarm_addon/`.

The zip installs both ways Blender knows: as an extension (4.2 and newer read
`blender_manifest.toml`) and as a legacy add-on (3.4 reads `bl_info`). It holds
the add-on itself plus private copies of what it needs from outside Blender:

- the modules of this repository's `framefarm` packages that the add-on imports, and
  what those import in turn (found by reading the imports, so nothing the add-on does
  not use is bundled and nothing it uses is forgotten): today the packer and submission
  from `framefarm.client`, and the failover HTTP client, API client, hashing, .blend
  headers and frame ranges from `framefarm.common`;
- `blender_asset_tracer`, copied from the installed package at build time.

They go under `framefarm_addon/_vendor/`, with every absolute import of
`framefarm` or `blender_asset_tracer` rewritten into a relative one, so the
add-on never puts anything on `sys.path`: another add-on bundling its own BAT
(Flamenco does) or a `framefarm` installed in Blender's Python cannot clash
with ours. Nothing here is a hand-kept copy; every build takes the sources anew.

    python packaging/build_addon.py [--output dist/framefarm_addon.zip]
"""
from __future__ import annotations

import argparse
import ast
import importlib.util
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ADDON = REPO / "blender_addon" / "framefarm_addon"
TOP = "framefarm_addon"
VENDORED_TOPS = ("framefarm", "blender_asset_tracer")
# The source folders of Framefarm's distributions, each holding part of the `framefarm` namespace.
SOURCE_ROOTS = tuple(REPO / root for root in ("common", "client", "worker", "backend"))
# Parts of BAT the add-on never imports and whose dependencies Blender lacks (boto3, requests).
BAT_SKIP = ("cli", "pack/s3.py", "pack/shaman", "__main__.py")


def relative_imports(source: str, package_depth: int) -> str:
    """Rewrite absolute imports of vendored packages into relative ones.

    `package_depth` is how many packages deep the module sits below `_vendor`
    (1 for `_vendor/framefarm/x.py`... counted from its own package), so the
    relative prefix reaches `_vendor` itself. Line numbers are kept.
    """
    dots = "." * (package_depth + 1)
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    edits: list[tuple[int, int, int, str]] = []
    for node in ast.walk(tree):
        new = None
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and node.module.split(".")[0] in VENDORED_TOPS:
            names = ", ".join(a.name + (f" as {a.asname}" if a.asname else "") for a in node.names)
            new = f"from {dots}{node.module} import {names}"
        elif isinstance(node, ast.Import) and any(a.name.split(".")[0] in VENDORED_TOPS for a in node.names):
            new = "; ".join(_import_stmt(a, dots) for a in node.names)
        if new is not None:
            assert isinstance(node, (ast.Import, ast.ImportFrom))
            if node.end_lineno != node.lineno:
                raise ValueError(f"multi-line vendored import at line {node.lineno}: rewrite unsupported")
            edits.append((node.lineno, node.col_offset, node.end_col_offset or 0, new))
    for lineno, start, end, new in sorted(edits, reverse=True):
        line = lines[lineno - 1]
        lines[lineno - 1] = line[:start] + new + line[end:]
    return "".join(lines)


def _import_stmt(alias: ast.alias, dots: str) -> str:
    top, _, rest = alias.name.partition(".")
    if top not in VENDORED_TOPS:
        return f"import {alias.name}" + (f" as {alias.asname}" if alias.asname else "")
    if alias.asname:
        parent, _, leaf = alias.name.rpartition(".")
        return f"from {dots}{parent} import {leaf} as {alias.asname}" if parent \
            else f"from {dots} import {top} as {alias.asname}"
    # `import a.b.c` binds `a` and loads a.b.c: load it relatively, then bind the top.
    load = f"__import__('importlib').import_module('{dots}{alias.name}', __package__); " if rest else ""
    return f"{load}from {dots} import {top}"


def _module_file(module: str) -> Path | None:
    """The source file of `framefarm.x.y` in this repository (a module or a package)."""
    rel = Path(*module.split("."))
    for root in SOURCE_ROOTS:
        for candidate in (root / rel.with_suffix(".py"), root / rel / "__init__.py"):
            if candidate.is_file():
                return candidate
    return None


def _imports(path: Path, module: str) -> set[str]:
    """Every module that `path` (the module named `module`) imports, anywhere in it,
    with relative imports resolved; `from a import b` counts `a` and `a.b`."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            name = ".".join(base + ([node.module] if node.module else []))
            found.add(name)
            found.update(f"{name}.{alias.name}" for alias in node.names)
    return found


def repo_modules() -> dict[str, Path]:
    """`framefarm` module -> source file, for every module the add-on needs from this
    repository: what it imports from `._vendor.framefarm`, and what those import."""
    vendor = f"{TOP}._vendor."
    todo = []
    for path in sorted(ADDON.rglob("*.py")):
        rel = path.relative_to(ADDON.parent).with_suffix("")
        module = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        todo += [m.removeprefix(vendor) for m in _imports(path, module) if m.startswith(vendor + "framefarm.")]
    modules: dict[str, Path] = {}
    while todo:
        module = todo.pop()
        if module in modules or module == "framefarm":
            continue
        source = _module_file(module)
        if source is None:
            if _module_file(module.rpartition(".")[0]) is None:  # not a name imported from a module
                raise SystemExit(f"the add-on needs {module}, which is not in this repository")
            continue
        modules[module] = source
        parent = module.rpartition(".")[0]
        todo += [parent] + [m for m in _imports(source, module) if m.startswith("framefarm.")]
    return modules


def _vendored_sources() -> dict[str, Path]:
    """Archive path under _vendor -> source file."""
    files: dict[str, Path] = {}
    for module, path in sorted(repo_modules().items()):
        dest = module.replace(".", "/")
        files[f"{dest}/__init__.py" if path.name == "__init__.py" else f"{dest}.py"] = path
    spec = importlib.util.find_spec("blender_asset_tracer")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("blender-asset-tracer is not installed: pip install blender-asset-tracer")
    bat = Path(next(iter(spec.submodule_search_locations)))
    for path in sorted(bat.rglob("*.py")):
        rel = path.relative_to(bat).as_posix()
        if not any(rel == skip or rel.startswith(skip + "/") for skip in BAT_SKIP):
            files[f"blender_asset_tracer/{rel}"] = path
    return files


def build(output: Path) -> Path:
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".part")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(ADDON.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix in (".py", ".toml"):
                zf.write(path, f"{TOP}/{path.relative_to(ADDON).as_posix()}")
        zf.writestr(f"{TOP}/_vendor/__init__.py", '"""Private copies of Framefarm\'s client and BAT (see '
                                                  'packaging/build_addon.py)."""\n')
        zf.writestr(f"{TOP}/_vendor/framefarm/__init__.py", "")
        for dest, src in _vendored_sources().items():
            depth = dest.count("/")  # packages between _vendor and the module
            text = relative_imports(src.read_text(encoding="utf-8"), depth)
            zf.writestr(f"{TOP}/_vendor/{dest}", text)
    tmp.replace(output)
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", type=Path, default=REPO / "dist" / "framefarm_addon.zip")
    args = parser.parse_args(argv)
    print(build(args.output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
