"""Blender's output path rules as zip names (common/output_names.py); the same names against real
Blender's own files are in tests/system/test_output_names.py."""
from __future__ import annotations

import pytest

from framefarm.common import output_names
from framefarm.common.output_names import check, entry_name, pattern


@pytest.mark.parametrize("path,extension,expected", [
    ("//render/shot010_####", ".png", "render/shot010_####.png"),
    ("//render/shot010_####.png", ".png", "render/shot010_####.png"),  # already there: not twice
    ("//shot_##_v2", ".jpg", "shot_##_v2.jpg"),  # `#` in the middle of a name
    ("//shot_####.JPEG", ".jpg", "shot_####.JPEG"),  # JPEG's other extension, any case
    ("//shot_####.jpg", ".png", "shot_####.png"),  # another image format's extension is replaced
    ("//a#b/frame.jpg", ".tif", "a#b/frame.jpg####.tif"),  # no `#` in the name: four appended, then the extension
    ("//render/", ".png", "render/####.png"),
    ("//", ".exr", "####.exr"),
    ("/tmp/", ".png", "####.png"),  # Blender's default: an absolute folder, only the name is kept
    ("/mnt/renders/shot_##", ".png", "shot_##.png"),
    ("C:\\renders\\shot_###", ".png", "shot_###.png"),
    ("//../renders/./shot_####", ".png", "renders/shot_####.png"),
    ("//noext_####", "", "noext_####"),
    ("//a##/b#/c", ".png", "a##/b#/c####.png"),
])
def test_patterns(path: str, extension: str, expected: str) -> None:
    assert pattern(path, extension) == expected
    check(expected)


@pytest.mark.parametrize("value,frame,expected", [
    ("render/shot010_####.png", 250, "render/shot010_0250.png"),
    ("shot_##_v2.jpg", 7, "shot_07_v2.jpg"),
    ("shot_#.png", 12345, "shot_12345.png"),  # the run is a minimum width, as Blender's %.*d
    ("a##/b_##_###.png", 3, "a##/b_##_003.png"),  # the file name's last run; folders keep theirs
    ("neg_####.png", -5, "neg_-0005.png"),
])
def test_entry_names(value: str, frame: int, expected: str) -> None:
    assert entry_name(value, frame) == expected


@pytest.mark.parametrize("value", [
    "", "../x_####.png", "a/../../x_####.png", "/etc/x_####", "./x_####", "a//x_####", "C:/x_####",
    "a\\..\\x_####", "x_####\x00.png", "x\n_####", "render/shot.png",  # no `#` run in the file name
    "a" * 300 + "_####", "d/" * 600 + "x_####",
])
def test_unsafe_patterns_are_refused(value: str) -> None:
    with pytest.raises(ValueError):
        check(value)


def test_every_pattern_the_client_makes_is_safe() -> None:
    """Whatever path a scene holds, `pattern` makes a name `check` accepts (or one too long)."""
    hostile = ["//../../../../etc/passwd", "/..", "//..", "..\\..\\x", "//a/../../b/#", "C:..\\x", "//\\\\server\\x"]
    for path in hostile:
        made = pattern(path, ".png")
        check(made)
        assert ".." not in made.split("/") and not made.startswith("/")
    assert len(output_names.IMAGE_EXTENSIONS) == len(set(output_names.IMAGE_EXTENSIONS))
