"""scripts/gallery.py: photo, each model's output and the Gatys image from a compare run, in one labelled grid."""

from __future__ import annotations

import pytest
from PIL import Image

from fastnst.nets.modelfile import save_style_model
from tests.support import load_script, noise_photo, random_style_net

pytestmark = pytest.mark.usefixtures("one_thread", "default_malloc")



def test_gallery_rows_and_missing_gatys_image(tmp_path, capsys):
    gallery = load_script("gallery")
    models = [save_style_model(tmp_path / f"{n}.safetensors", random_style_net(4, 1, seed=i), {"style": n})
              for i, n in enumerate(("ink", "rust"))]
    photos = [noise_photo(tmp_path / "p" / "a.png", 40, 30), noise_photo(tmp_path / "p" / "b.jpg", 30, 40, seed=1)]
    compare_dir = tmp_path / "cmp"
    for photo in photos:  # compare.py writes its Gatys images at its own size
        noise_photo(compare_dir / "images" / f"{photo.stem}_gatys.png", 20, 20, seed=5)
    out = tmp_path / "g.jpg"
    args = [a for p in photos for a in ("--photo", str(p))] + ["--model", str(models[0]), "--model", str(models[1]),
                                                              "--gatys", str(compare_dir), "--size", "40", "-o", str(out)]
    assert gallery.main(args) == 0
    with Image.open(out) as im:
        w, h = im.size
    assert w > 4 * 40 and h > 2 * 40  # 2 rows of photo, ink, rust, Gatys

    (compare_dir / "images" / "b_gatys.png").unlink()
    assert gallery.main(args) == 1
    assert "b_gatys.png" in capsys.readouterr().err
