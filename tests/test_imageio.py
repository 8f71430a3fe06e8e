"""Tests for fastnst.imageio: formats, pixel convention, atomic saves, bad input."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from fastnst.imageio import (
    IMAGE_EXTENSIONS,
    SAVE_EXTENSIONS,
    ImageError,
    is_image_file,
    load_image,
    load_painting,
    open_image,
    open_painting,
    pil_to_tensor,
    resize_long_side,
    save_image,
    tensor_to_pil,
)

RED = (255, 0, 0)
BLUE = (0, 0, 255)


def _rng_uint8(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _smooth_rgb(h: int = 48, w: int = 64) -> np.ndarray:
    """A smooth image; lossy codecs reproduce it closely (noise would not)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([x / (w - 1), y / (h - 1), 0.5 + 0.25 * np.sin(x / 9.0)], axis=-1)
    return np.rint(img * 255).astype(np.uint8)


def _png_header_only(w: int, h: int) -> bytes:
    """A tiny PNG file whose header claims w x h (1-bit); decoding it would fail.

    Lets bomb tests run instantly: the check must happen before decoding.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


def _pillow_info(path: Path) -> tuple[str, str, int]:
    """(mode, format, n_frames) as Pillow itself sees the file; closes it."""
    with Image.open(path) as im:
        return im.mode, str(im.format), getattr(im, "n_frames", 1)


def _pillow_array(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


def _assert_image_tensor(t: torch.Tensor, h: int, w: int) -> None:
    assert t.shape == (1, 3, h, w)
    assert t.dtype == torch.float32
    assert float(t.min()) >= 0.0 and float(t.max()) <= 1.0


def _assert_error(excinfo: pytest.ExceptionInfo[ImageError], path: Path, *words: str) -> None:
    msg = str(excinfo.value)
    assert path.name in msg, msg
    assert "\n" not in msg, msg
    for word in words:
        assert word in msg, msg


# ---------------------------------------------------------------- round trips


def test_png_round_trip_is_exact(tmp_path: Path) -> None:
    arr = _rng_uint8(17, 23)
    t = torch.from_numpy(arr).permute(2, 0, 1).float().div(255).unsqueeze(0)
    out = save_image(t, tmp_path / "x.png")
    assert out == tmp_path / "x.png" and out.is_file()
    back = load_image(out)
    _assert_image_tensor(back, 17, 23)
    assert torch.equal(back, t)
    assert np.array_equal(np.asarray(open_image(out)), arr)


def test_save_accepts_pil_and_3d_tensor(tmp_path: Path) -> None:
    arr = _rng_uint8(5, 7, seed=1)
    save_image(Image.fromarray(arr), tmp_path / "a.png")
    t3 = torch.from_numpy(arr).permute(2, 0, 1).float() / 255
    save_image(t3, tmp_path / "b.PNG")  # extension case does not matter
    assert np.array_equal(_pillow_array(tmp_path / "a.png"), arr)
    assert np.array_equal(_pillow_array(tmp_path / "b.PNG"), arr)


@pytest.mark.parametrize("ext", [".jpg", ".jpeg", ".webp"])
def test_lossy_round_trip_is_close(tmp_path: Path, ext: str) -> None:
    arr = _smooth_rgb()
    t = pil_to_tensor(Image.fromarray(arr))
    back = load_image(save_image(t, tmp_path / f"x{ext}", quality=95))
    _assert_image_tensor(back, *arr.shape[:2])
    assert float((back - t).abs().mean()) < 0.02


# ---------------------------------------------------------------- formats


def _solid(mode_color: tuple[int, ...] = RED, size: tuple[int, int] = (12, 8)) -> Image.Image:
    return Image.new("RGB", size, mode_color)


@pytest.mark.parametrize(
    ("name", "make", "expected", "tol"),
    [
        ("a.jpg", lambda: _solid(), RED, 3),
        ("a.png", lambda: _solid(), RED, 0),
        ("a.webp", lambda: _solid(), RED, 3),
        ("a.tif", lambda: _solid(), RED, 0),
        ("a.tiff", lambda: _solid(BLUE), BLUE, 0),
        ("a.bmp", lambda: _solid(), RED, 0),
        ("g.png", lambda: Image.new("L", (12, 8), 77), (77, 77, 77), 0),
        ("g.jpg", lambda: Image.new("L", (12, 8), 77), (77, 77, 77), 2),
        ("one.png", lambda: Image.new("1", (12, 8), 1), (255, 255, 255), 0),
        ("la.png", lambda: Image.new("LA", (12, 8), (90, 0)), (90, 90, 90), 0),
        # Alpha is dropped, not composited: a fully transparent pixel keeps its colour.
        ("rgba.png", lambda: Image.new("RGBA", (12, 8), (10, 200, 30, 0)), (10, 200, 30), 0),
        ("rgba.webp", lambda: Image.new("RGBA", (12, 8), (10, 200, 30, 128)), (10, 200, 30), 4),
        # CMYK (0, 255, 0, 0) is magenta.
        ("cmyk.jpg", lambda: Image.new("CMYK", (12, 8), (0, 255, 0, 0)), (255, 0, 255), 3),
        ("cmyk.tif", lambda: Image.new("CMYK", (12, 8), (0, 255, 0, 0)), (255, 0, 255), 0),
    ],
)
def test_every_format_loads_as_rgb_with_its_colours(
    tmp_path: Path, name: str, make, expected: tuple[int, int, int], tol: int
) -> None:
    path = tmp_path / name
    make().save(path)
    t = load_image(path)
    _assert_image_tensor(t, 8, 12)
    got = (t[0, :, 4, 6] * 255).round()
    assert torch.allclose(got, torch.tensor(expected, dtype=torch.float32), atol=tol), got
    img = open_image(path)
    assert img.mode == "RGB" and img.size == (12, 8)


def test_palette_png_with_transparency(tmp_path: Path) -> None:
    pal = Image.new("P", (6, 4), 0)
    pal.putpalette([255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 6))
    pal.putpixel((5, 3), 1)
    pal.info["transparency"] = 0  # index 0 (red) is transparent: colour kept, alpha dropped
    path = tmp_path / "pal.png"
    pal.save(path)
    assert _pillow_info(path)[0] == "P"
    t = load_image(path)
    _assert_image_tensor(t, 4, 6)
    assert t[0, :, 0, 0].tolist() == [1.0, 0.0, 0.0]
    assert t[0, :, 3, 5].tolist() == [0.0, 1.0, 0.0]


def test_16bit_png_keeps_precision(tmp_path: Path) -> None:
    # 0..65535 in steps of 17: many values share a high byte, so 8 bits cannot tell them apart.
    data = (np.arange(64 * 60, dtype=np.uint32) * 17 % 65536).astype(np.uint16).reshape(60, 64)
    data[0, 0], data[0, 1], data[0, 2] = 65535, 32768, 0
    path = tmp_path / "g16.png"
    Image.fromarray(data).save(path)
    assert _pillow_info(path)[0].startswith("I")

    t = load_image(path)
    _assert_image_tensor(t, 60, 64)
    assert torch.equal(t[0, 0], t[0, 1]) and torch.equal(t[0, 1], t[0, 2])
    expected = torch.from_numpy(data.astype(np.float32) / 65535)
    assert torch.allclose(t[0, 0], expected, atol=1e-6)
    assert torch.unique(t[0, 0]).numel() > 256  # more than 8 bits survived
    # Scaled, not clipped (Pillow's convert("RGB") would map 32768 to 255).
    assert t[0, 0, 0, 0].item() == 1.0 and abs(t[0, 0, 0, 1].item() - 0.5) < 1e-4

    img = open_image(path)  # the 8-bit view is scaled too
    assert img.mode == "RGB"
    assert img.getpixel((1, 0)) == (128, 128, 128) and img.getpixel((0, 0)) == (255,) * 3

    small = load_image(path, max_size=32)  # resized in float, still > 8 bits
    _assert_image_tensor(small, 30, 32)
    assert torch.unique(small[0, 0]).numel() > 256


def test_32bit_int_tiff_is_read_as_16bit_data(tmp_path: Path) -> None:
    data = np.array([[0, 257, 32768, 65535]], dtype=np.int32)
    path = tmp_path / "i.tif"
    Image.fromarray(data).save(path)
    assert _pillow_info(path)[0] == "I"
    t = load_image(path)
    _assert_image_tensor(t, 1, 4)
    assert torch.allclose(t[0, 0, 0], torch.from_numpy(data[0] / 65535).float(), atol=1e-6)


def test_animated_gif_loads_first_frame(tmp_path: Path) -> None:
    frames = [_solid(RED), _solid(BLUE), _solid((0, 255, 0))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    assert _pillow_info(path)[2] == 3
    t = load_image(path)
    _assert_image_tensor(t, 8, 12)
    assert (t[0, :, 4, 6] * 255).round().tolist() == list(RED)


def test_exif_orientation_is_honoured(tmp_path: Path) -> None:
    img = Image.new("RGB", (40, 20), RED)
    img.paste(BLUE, (20, 0, 40, 20))  # left half red, right half blue
    exif = img.getexif()
    exif[0x0112] = 6  # Orientation: "rotate 90 CW to display"
    path = tmp_path / "rot.jpg"
    img.save(path, exif=exif, quality=95)

    t = load_image(path)
    _assert_image_tensor(t, 40, 20)  # displayed as 20 wide x 40 tall
    top, bottom = t[0, :, 5, 10] * 255, t[0, :, 35, 10] * 255
    assert top[0] > 200 and top[2] < 50  # the left (red) half is now on top
    assert bottom[2] > 200 and bottom[0] < 50
    assert open_image(path).size == (20, 40)


# ---------------------------------------------------------------- resizing


def test_load_image_max_size(tmp_path: Path) -> None:
    path = tmp_path / "wide.png"
    Image.fromarray(_smooth_rgb(50, 100)).save(path)
    _assert_image_tensor(load_image(path, max_size=40), 20, 40)
    _assert_image_tensor(load_image(path, max_size=1000), 50, 100)  # never upscaled
    _assert_image_tensor(load_image(path, max_size=100), 50, 100)
    with pytest.raises(ValueError):
        load_image(path, max_size=0)


def test_resize_long_side_shrinks_and_enlarges_only_on_request() -> None:
    tall = Image.new("RGB", (30, 90))
    assert resize_long_side(tall, 45).size == (15, 45)
    assert resize_long_side(tall, 200).size == (30, 90)
    assert resize_long_side(tall, 200, upscale=True).size == (67, 200)  # 66.67 rounds to 67
    assert resize_long_side(Image.new("RGB", (1000, 1)), 10).size == (10, 1)  # at least 1 px
    assert resize_long_side(Image.new("L", (7, 7)), 3).size == (3, 3)
    with pytest.raises(ValueError):
        resize_long_side(tall, 0)


# ---------------------------------------------------------------- tensors


def test_tensor_to_pil_clamps_rounds_and_does_not_modify_input() -> None:
    t = torch.tensor([-0.5, 0.0, 0.5, 1.0, 1.5, 0.2]).reshape(1, 3, 1, 2)
    t[0, 0, 0, 0] = float("nan")
    before = t.clone()
    img = tensor_to_pil(t)
    assert torch.equal(torch.isnan(t), torch.isnan(before))
    assert torch.equal(t.nan_to_num(7.0), before.nan_to_num(7.0))
    assert img.mode == "RGB" and img.size == (2, 1)
    arr = np.asarray(img)  # (H, W, C)
    assert arr[0, :, 0].tolist() == [0, 0]  # NaN -> 0, 0.0 -> 0
    assert arr[0, :, 1].tolist() == [128, 255]  # 0.5 rounds to 128
    assert arr[0, :, 2].tolist() == [255, 51]  # clamped 1.5, 0.2*255 = 51


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_tensor_to_pil_dtypes_and_shapes(dtype: torch.dtype) -> None:
    t = torch.rand(3, 5, 4, generator=torch.Generator().manual_seed(0)).to(dtype)
    before = t.clone()
    for x in (t, t.unsqueeze(0)):
        img = tensor_to_pil(x)
        assert img.size == (4, 5) and img.mode == "RGB"
    assert torch.equal(t, before)
    expected = (t.float().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    assert np.array_equal(np.asarray(tensor_to_pil(t)), expected)


def test_tensor_to_pil_rejects_bad_shapes() -> None:
    for bad in (torch.rand(2, 3, 4, 4), torch.rand(4, 4, 4), torch.rand(4, 4)):
        with pytest.raises(ValueError):
            tensor_to_pil(bad)
    with pytest.raises(TypeError):
        tensor_to_pil(torch.zeros(3, 2, 2, dtype=torch.uint8))


def test_pil_to_tensor_keeps_the_8_bit_values() -> None:
    arr = _rng_uint8(3, 4, seed=2)
    t = pil_to_tensor(Image.fromarray(arr))
    _assert_image_tensor(t, 3, 4)
    assert torch.equal((t[0] * 255).round().to(torch.uint8).permute(1, 2, 0), torch.from_numpy(arr))
    _assert_image_tensor(pil_to_tensor(Image.new("L", (4, 3), 9)), 3, 4)


# ---------------------------------------------------------------- saving


def test_image_extensions_are_recognised_in_any_case() -> None:
    assert {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif"} == IMAGE_EXTENSIONS
    assert {".png", ".jpg", ".jpeg", ".webp"} == SAVE_EXTENSIONS
    assert is_image_file("a/B.JPG") and is_image_file(Path("x.tiff"))
    assert not is_image_file("notes.txt") and not is_image_file("jpg")


@pytest.mark.parametrize("name", ["out.gif", "out.bmp", "out.txt", "out"])
def test_save_unknown_extension(tmp_path: Path, name: str) -> None:
    with pytest.raises(ImageError) as excinfo:
        save_image(torch.zeros(3, 2, 2), tmp_path / name)
    _assert_error(excinfo, tmp_path / name, ".png", ".jpg", ".webp")
    assert list(tmp_path.iterdir()) == []


def test_save_is_atomic_and_creates_parents(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b" / "styled.jpg"
    save_image(torch.rand(1, 3, 8, 8), out)
    save_image(torch.rand(1, 3, 8, 8), out)  # overwriting works too
    assert sorted(p.name for p in out.parent.iterdir()) == ["styled.jpg"]
    assert _pillow_info(out)[1] == "JPEG"
    if os.name == "posix":  # not the 0600 a mkstemp file would have
        umask = os.umask(0)
        os.umask(umask)
        assert out.stat().st_mode & 0o777 == 0o666 & ~umask


def test_failed_save_leaves_old_file_and_no_temp(tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "keep.png"
    save_image(torch.zeros(3, 4, 4), out)
    old = out.read_bytes()

    def broken_save(self, fp, *args, **kwargs):
        fp.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_image(torch.ones(3, 4, 4), out)
    assert out.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == ["keep.png"]


def test_save_to_directory_errors(tmp_path: Path) -> None:
    d = tmp_path / "taken.png"
    d.mkdir()
    with pytest.raises(ImageError) as excinfo:
        save_image(torch.zeros(3, 2, 2), d)
    _assert_error(excinfo, d, "directory")


# ---------------------------------------------------------------- bad input


def test_a_missing_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "nope.png"
    with pytest.raises(ImageError) as excinfo:
        load_image(path)
    _assert_error(excinfo, path, "file not found")


def test_a_directory_is_refused_as_an_image(tmp_path: Path) -> None:
    path = tmp_path / "folder.jpg"
    path.mkdir()
    with pytest.raises(ImageError) as excinfo:
        open_image(path)
    _assert_error(excinfo, path, "is a directory")


def test_text_file_named_jpg(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    path.write_text("this is not a picture\n" * 10)
    with pytest.raises(ImageError) as excinfo:
        load_image(path)
    _assert_error(excinfo, path, "not an image file")


def test_an_empty_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "z.png"
    path.touch()
    with pytest.raises(ImageError) as excinfo:
        load_image(path)
    _assert_error(excinfo, path, "empty file")


@pytest.mark.parametrize("name", ["t.jpg", "t.png"])
def test_a_truncated_file_is_refused(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    Image.fromarray(_rng_uint8(64, 64, seed=3)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError) as excinfo:
        load_image(path)
    _assert_error(excinfo, path, "truncated or corrupt")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # we must not have flipped Pillow's global


def test_bomb_below_caller_limit(tmp_path: Path) -> None:
    default = Image.MAX_IMAGE_PIXELS
    header = tmp_path / "big.png"
    header.write_bytes(_png_header_only(20000, 20000))
    with pytest.raises(ImageError) as excinfo:
        load_image(header, max_pixels=1_000_000)
    _assert_error(excinfo, header, "too large", "400000000 pixels", "limit 1000000")

    real = tmp_path / "real.png"  # a genuinely decodable image just over the limit
    Image.new("1", (1001, 1000)).save(real)
    with pytest.raises(ImageError) as excinfo:
        open_image(real, max_pixels=1_000_000)
    _assert_error(excinfo, real, "too large")
    _assert_image_tensor(load_image(real, max_pixels=1_001_000, max_size=10), 10, 10)
    assert Image.MAX_IMAGE_PIXELS == default


@pytest.mark.parametrize(
    "side",
    [
        15000,  # > 2x Pillow's default: Pillow raises DecompressionBombError
        10000,  # between 1x and 2x: Pillow only *warns* unless told otherwise
    ],
)
def test_bomb_above_pillow_default(tmp_path: Path, side: int) -> None:
    assert Image.MAX_IMAGE_PIXELS is not None and side * side > Image.MAX_IMAGE_PIXELS
    path = tmp_path / f"bomb{side}.png"
    path.write_bytes(_png_header_only(side, side))
    with pytest.raises(ImageError) as excinfo:
        load_image(path)
    _assert_error(excinfo, path, "too large", f"{side * side} pixels", "decompression bomb", "--max-pixels")


def test_raising_max_pixels_above_pillow_limit_is_temporary(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    path = tmp_path / "medium.png"
    Image.new("RGB", (60, 50), BLUE).save(path)  # 3000 px: > 2x Pillow's (patched) limit
    with pytest.raises(ImageError) as excinfo:
        load_image(path)
    _assert_error(excinfo, path, "3000 pixels > limit 1000")
    _assert_image_tensor(load_image(path, max_pixels=5000), 50, 60)
    assert Image.MAX_IMAGE_PIXELS == 1000  # restored
    with pytest.raises(ValueError):
        load_image(path, max_pixels=0)


def test_an_icc_profile_other_than_srgb_is_converted_to_srgb(tmp_path: Path) -> None:
    from PIL import ImageCms

    from tests.support import DISPLAY_P3_D50, icc_rgb_profile

    p3 = icc_rgb_profile(DISPLAY_P3_D50, description="Display P3 (test)")
    Image.new("RGB", (8, 6), (50, 150, 100)).save(tmp_path / "p3.png", icc_profile=p3)
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.new("RGB", (8, 6), (50, 150, 100)).save(tmp_path / "srgb.png", icc_profile=srgb)
    # P3's (50, 150, 100) is sRGB's (0, 154, 95): read as sRGB it was a dull, shifted green
    assert open_image(tmp_path / "p3.png").getpixel((0, 0)) == pytest.approx((0, 154, 95), abs=2)
    assert load_image(tmp_path / "p3.png")[0, :, 0, 0].mul(255).round().tolist() == pytest.approx([0, 154, 95], abs=2)
    assert open_image(tmp_path / "srgb.png").getpixel((0, 0)) == (50, 150, 100)  # sRGB-tagged: bit-exact


def test_an_unusable_icc_profile_is_ignored_with_a_warning(tmp_path: Path) -> None:
    Image.new("RGB", (8, 6), (50, 150, 100)).save(tmp_path / "bad.png", icc_profile=b"not a profile" * 10)
    with pytest.warns(UserWarning, match="bad.png: ignoring unusable ICC colour profile"):
        assert open_image(tmp_path / "bad.png").getpixel((0, 0)) == (50, 150, 100)


def test_a_painting_loads_without_its_scan_frame_unless_asked():
    from fastnst.assets import STYLE_IMAGES

    framed = STYLE_IMAGES["starry"]  # a scan in a black frame: 752x600
    img, cut = open_painting(framed)
    assert any(cut) and img.size == (752 - cut[2] - cut[3], 600 - cut[0] - cut[1])
    assert open_painting(framed, trim_frame=False)[1] == (0, 0, 0, 0)
    assert load_painting(framed, trim_frame=False).shape == (1, 3, 600, 752)
    small = load_painting(framed, max_size=128)
    assert small.shape[0:2] == (1, 3) and max(small.shape[-2:]) == 128
    assert abs(small.shape[-1] / small.shape[-2] - img.width / img.height) < 0.02  # the trimmed aspect
