"""Images that ship with a fresh install: the project's paintings and scikit-image's sample photos."""

from __future__ import annotations

from pathlib import Path

STYLES_DIR = Path(__file__).resolve().parent / "assets" / "styles"

# Public-domain paintings the project may ship (served by Debian packages: opencv-doc, darknet).
STYLE_IMAGES = {
    "starry": STYLES_DIR / "starry_night.jpg",  # Van Gogh, The Starry Night (1889), 752x600
    "scream": STYLES_DIR / "the_scream.jpg",  # Munch, The Scream (1893), 352x448
}

# Colour or grayscale photographs (CC0) bundled inside the scikit-image wheel, so `data=sample`
# trains out of the box with no download. Synthetic test patterns and micrographs are left out.
SKIMAGE_PHOTOS = (
    "astronaut.png",
    "brick.png",
    "camera.png",
    "chelsea.png",
    "coffee.png",
    "coins.png",
    "grass.png",
    "gravel.png",
    "hubble_deep_field.jpg",
    "moon.png",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "retina.jpg",
    "rocket.jpg",
)


def style_image_path(name: str) -> Path:
    """Path of a bundled painting by short name (``starry``, ``scream``)."""
    try:
        return STYLE_IMAGES[name]
    except KeyError:
        raise KeyError(f"no bundled style image {name!r}; bundled: {sorted(STYLE_IMAGES)}") from None


def resolve_style_image(text: str) -> Path:
    """A style image given as a path or a bundled painting's name -> its path (the one lookup of all
    front ends). A file that exists wins over a bundled name; neither raises FileNotFoundError with
    a one-line message that lists the bundled names."""
    path = Path(str(text)).expanduser()
    if path.is_file():
        return path
    if str(text) in STYLE_IMAGES:
        return STYLE_IMAGES[str(text)]
    what = "is a directory, not an image file" if path.is_dir() else "no such file"
    raise FileNotFoundError(f"{text}: {what}, and not a bundled painting (bundled: {', '.join(STYLE_IMAGES)})")


def sample_image_paths() -> list[Path]:
    """The bundled sample photos that exist in the installed scikit-image (may be empty if absent)."""
    try:
        import skimage
    except ImportError:
        return []
    data_dir = Path(skimage.__file__).resolve().parent / "data"
    return [data_dir / name for name in SKIMAGE_PHOTOS if (data_dir / name).is_file()]


# Six photos of the training packages (configs/data/packages.yaml) never trained on: the model cards' and
# scripts/quick_curve.py's held-out set, relative to the folder scripts/gather_photos.py fills.
HELD_OUT_PHOTOS = ("darknet/dog.jpg", "darknet/kite.jpg", "opencv-doc/baboon.jpg", "opencv-doc/fruits.jpg",
                   "opencv-doc/stuff.jpg", "sklearn/flower.jpg")
