"""Animated images: every frame stylized into the same kind of animation, keeping frame durations and
the loop count; refusals and the first-frame note. Tiny synthetic animations made in tmp_path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fastnst.cli.stylize import main
from fastnst.imageio import ImageError
from fastnst.infer.stylizer import Stylizer
from fastnst.nets.modelfile import save_style_model
from fastnst.video import animation
from fastnst.video.animation import is_animated_image, stylize_animation
from tests.support import random_style_net

pytestmark = pytest.mark.usefixtures("one_thread", "default_malloc")

DURATIONS = [50, 100, 150, 200, 250]


def make_animation(path: Path, count: int = 5, size: tuple[int, int] = (40, 30), **options) -> Path:
    rng = np.random.default_rng(0)
    frames = [Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)) for _ in range(count)]
    frames[0].save(path, save_all=True, append_images=frames[1:], **options)
    return path


def durations_and_loop(path: Path) -> tuple[list[int], object, int]:
    with Image.open(path) as img:
        durations = []
        for i in range(img.n_frames):
            img.seek(i)
            img.load()  # WebP sets a frame's duration when it is decoded
            durations.append(img.info.get("duration"))
        return durations, img.info.get("loop"), img.n_frames


@pytest.fixture(scope="module")
def stylizer() -> Stylizer:
    return Stylizer(random_style_net(base_channels=8, blocks=1), device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "mosaic.safetensors"
    save_style_model(path, random_style_net(base_channels=8, blocks=1), {"style": "mosaic", "steps": 1})
    return path


def test_every_gif_frame_is_stylized_keeping_durations_and_loop(stylizer, tmp_path):
    src = make_animation(tmp_path / "cat.gif", duration=DURATIONS, loop=0)
    seen = []
    result = stylize_animation(stylizer, src, tmp_path / "out.gif", progress=lambda done, total: seen.append((done, total)))
    assert (result.frames, result.width, result.height, result.audio) == (5, 40, 30, None)
    assert durations_and_loop(result.path) == (DURATIONS, 0, 5)
    assert seen == [(i, 5) for i in range(1, 6)]
    with Image.open(src) as a, Image.open(result.path) as b:
        assert np.abs(np.asarray(a.convert("RGB"), int) - np.asarray(b.convert("RGB"), int)).mean() > 10  # stylized
    once = stylize_animation(stylizer, make_animation(tmp_path / "once.gif", duration=80), tmp_path / "once_out.gif",
                             stabilization=None, max_size=20)
    assert durations_and_loop(once.path) == ([80] * 5, None, 5)  # no loop in the input: played once
    assert (once.width, once.height) == (20, 15)


@pytest.mark.parametrize("ext", [".webp", ".png"])
def test_animated_webp_and_png_stay_animated(stylizer, tmp_path, ext):
    src = make_animation(tmp_path / f"a{ext}", count=3, duration=[60, 70, 80], loop=2)
    result = stylize_animation(stylizer, src, tmp_path / f"out{ext}")
    assert durations_and_loop(result.path) == ([60, 70, 80], 2, 3)


def test_bad_animations_are_one_line_errors_and_leave_nothing(stylizer, tmp_path, monkeypatch):
    src = make_animation(tmp_path / "cat.gif", count=20, size=(64, 48), duration=40)
    cut = tmp_path / "cut.gif"
    cut.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    with pytest.raises(ImageError, match=f"^{cut}: truncated or corrupt animation"):
        stylize_animation(stylizer, cut, tmp_path / "cut_out.gif")
    monkeypatch.setattr(animation, "MAX_ANIMATION_PIXELS", 20 * 64 * 48 - 1)
    with pytest.raises(ImageError, match="20 frames of 64x48 are too many pixels to hold.*--max-size"):
        stylize_animation(stylizer, src, tmp_path / "big_out.gif")
    assert stylize_animation(stylizer, src, tmp_path / "small_out.gif", max_size=32).frames == 20
    with pytest.raises(ImageError, match=r"image too large \(3072 pixels > limit 1000\)"):
        stylize_animation(stylizer, src, tmp_path / "bomb_out.gif", max_pixels=1000)
    with pytest.raises(ImageError, match="cannot write an animation as .jpg"):
        stylize_animation(stylizer, src, tmp_path / "x.jpg")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cat.gif", "cut.gif", "small_out.gif"]


def test_is_animated_image(tmp_path):
    assert is_animated_image(make_animation(tmp_path / "a.gif"))
    assert not is_animated_image(make_animation(tmp_path / "one.gif", count=1))
    assert not is_animated_image(make_animation(tmp_path / "still.png", count=1))
    (tmp_path / "junk.gif").write_bytes(b"GIF89a not really")
    assert not is_animated_image(tmp_path / "junk.gif")


def test_command_line_writes_animations_and_notes_a_first_frame_only(model, tmp_path, capsys):
    (tmp_path / "in").mkdir()
    src = make_animation(tmp_path / "in" / "cat.gif", duration=DURATIONS, loop=0)
    run = lambda *args: main(["--model", str(model), "--precision", "fp32", *args])  # noqa: E731
    assert run(str(tmp_path / "in")) == 0
    assert durations_and_loop(tmp_path / "in" / "cat_mosaic.gif") == (DURATIONS, 0, 5)
    assert "animation" in capsys.readouterr().err
    assert run(str(src), "-o", str(tmp_path / "named.gif")) == 0
    assert durations_and_loop(tmp_path / "named.gif")[2] == 5
    assert run(str(src), "-o", str(tmp_path / "out"), "--format", "jpg") == 0
    assert "only the first frame is stylized: .jpg holds no animation" in capsys.readouterr().err
    with Image.open(tmp_path / "out" / "cat_mosaic.jpg") as img:
        assert img.format == "JPEG" and img.size == (40, 30)


def test_a_gif_whose_header_claims_a_huge_screen_is_refused_as_a_bomb(stylizer, tmp_path):
    path = make_animation(tmp_path / "bomb.gif", count=2, size=(4, 4))
    data = bytearray(path.read_bytes())
    data[6:10] = (12000).to_bytes(2, "little") + (11000).to_bytes(2, "little")  # the logical screen size
    path.write_bytes(bytes(data))
    with pytest.raises(ImageError, match=r"bomb.gif: image too large \(132000000 pixels > limit \d+\); a decompression bomb"):
        stylize_animation(stylizer, path, tmp_path / "out.gif")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bomb.gif"]
