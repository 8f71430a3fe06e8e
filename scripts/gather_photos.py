"""Gather the training and held-out photos of ``configs/data/packages.yaml`` from the public packages
they come from, into one folder for ``data.root=``:

    python scripts/gather_photos.py ~/fastnst-photos
    python -m fastnst.train recipe=starry data.root=~/fastnst-photos

Debian packages (opencv-doc, darknet, mate-backgrounds) are fetched with ``apt-get download`` and unpacked
with ``dpkg-deb -x`` (no root, nothing installed); PyPI packages (scikit-image, scikit-learn) with
``pip download --no-deps`` and read from the wheel. Every file is checked against the sha256 the shipped
models were trained with; a mismatch (another package version) is reported, and the file kept.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from fastnst.assets import HELD_OUT_PHOTOS

# folder -> (kind, package, path of the photos inside the package)
SOURCES = {
    "darknet": ("deb", "darknet", "usr/share/darknet/data"),
    "mate-nature": ("deb", "mate-backgrounds", "usr/share/backgrounds/mate/nature"),
    "opencv-doc": ("deb", "opencv-doc", "usr/share/doc/opencv-doc/examples/data"),
    "skimage": ("pypi", "scikit-image", "skimage/data"),
    "sklearn": ("pypi", "scikit-learn", "sklearn/datasets/images"),
}

# Photos kept under another name than in their package: name -> path inside the package.
_EXAMPLES = "usr/share/doc/opencv-doc/examples"
RENAMED = {
    "opencv-doc/alphamat_plant.jpg": f"{_EXAMPLES}/alphamat/input_images/plant.jpg",
    "opencv-doc/hfs_001.jpg": f"{_EXAMPLES}/hfs/data/001.jpg",
    "opencv-doc/hfs_002.jpg": f"{_EXAMPLES}/hfs/data/002.jpg",
    "opencv-doc/reg_home.png": f"{_EXAMPLES}/reg/home.png",
    **{f"opencv-doc/scenetext0{i}.jpg": f"{_EXAMPLES}/text/scenetext0{i}.jpg" for i in range(1, 7)},
}

# Every photo (57 for training, 6 held out for evaluation) and its sha256.
SHA256 = {
    "darknet/dog.jpg": "5a9522051c3cec2bbd2f6323fccba32e8fbf3ddcc2b3e2fd46b04c720bc6f866",
    "darknet/eagle.jpg": "f95f57297fd51a6c5ddceb5ed6916fa759d1d65f402fee34c05b31a9608755c0",
    "darknet/giraffe.jpg": "00dc48a9b2af8a1fe4c4b79319726591f1033c7e1150f21e7577a79f3b6659f1",
    "darknet/horses.jpg": "c8f0a677a1356569e2ce71d2fa88c1030c0ae57ecf5e14170e02d9a86a20dcb4",
    "darknet/kite.jpg": "87410f52f79cc256c3949b48a3548632c07c8e9943468ef8caa6250f6643be8e",
    "darknet/person.jpg": "cdcbab947e46110fc2b77784ac54ddbbab2640f1e44cb5e91fc8984a9793a7d1",
    "mate-nature/Aqua.jpg": "5c30118205982da441bf7e6a1ada636a8a0be879408140b3148280c665ed6bce",
    "mate-nature/Blinds.jpg": "f7aac0dcc2e06d0491643e84df3da1d9db7c4610f58806a880d56e074799f600",
    "mate-nature/Dune.jpg": "8a67c2cb0be8c46b70c237311a4fa4d2b4ac7d39568135384787801fa5cc9a91",
    "mate-nature/FreshFlower.jpg": "972b0a0c4e5e3fa93f4f244fc84bc64b121a5eac3aaa5856f1308c1f38a02f8e",
    "mate-nature/Garden.jpg": "d3095ee09d425ef23d27155412136cf14fc3c9af76ca58b452f55e23da324e78",
    "mate-nature/GreenMeadow.jpg": "8fa0de0aa4089f7319c9fb7a6d006d4cab6023e8c8853731557cff53567b4832",
    "mate-nature/LadyBird.jpg": "e35a9a4126ef969c90b29c038058c5a575a20eadd84106a37bf1fa9931e7b61d",
    "mate-nature/RainDrops.jpg": "3e4ea9671c28c90a86cf67b3db9daf18c4741587c596333a7529ca589aaa0c16",
    "mate-nature/Storm.jpg": "77ca53077831d3237f73393a91fc879158abc046d852941c26e90de336356957",
    "mate-nature/TwoWings.jpg": "665e5abf8a5399070a91a9a8e455fe071e5b61697ff78fdeda4e9843ef545aeb",
    "mate-nature/Wood.jpg": "19c78500ac00a622e19907ab9cc7d06d46fe08c4a6142759a84195696150ec07",
    "mate-nature/YellowFlower.jpg": "254da96256acb7add685679775a04d1e4a5bc8cd13e5a5a3d61351ce198a5306",
    "opencv-doc/aero1.jpg": "d9a69191f6e3642ea361bc3c62e677b2f40fe6534b78da540f4155e0734b59ef",
    "opencv-doc/aero3.jpg": "1c407146f8762b3b14a7953ff9bc4c01ed64c467d7277122e769bf7e816017a4",
    "opencv-doc/aloeL.jpg": "cce5736808efe80d9f04b118dbb978c344d4345672b332718c3e039a3eeb8eee",
    "opencv-doc/alphamat_plant.jpg": "9928b44eee0d1d7ab2ffd9d6d80bbbff962d6e85c7786de2cd3c97fe72229186",
    "opencv-doc/apple.jpg": "e86879de3d9a807dedc742a8f464f39e6b74bbb531a1fba3583155d94997d1cd",
    "opencv-doc/baboon.jpg": "1a1dd18d78eec44420af3b0b7f08ee3d41c982916cae3ce203d7ff35d754cc0f",
    "opencv-doc/basketball1.png": "ba06f6701f7260998b430c39b6557f775497e6ce7b1a74f0b7ea6af371bf54a6",
    "opencv-doc/board.jpg": "4c9a24ba67138ad5486d550f586cc5dd1161be112f1c1bea336d6c550cdf255f",
    "opencv-doc/chicky_512.png": "4d2cf040de084fd3f34d5e3f96f1251faaa4787c1ac3b548fec5809a0d01854e",
    "opencv-doc/ela_original.jpg": "b55798b35e2dcb24675f0865a2442d0e4887eeb6aff322ecb1968d936cc23e7f",
    "opencv-doc/fruits.jpg": "9c031d80a1c52da5eca790db896baffec6a7e52bf786cdb7bbfca5c7f880e6a1",
    "opencv-doc/graf1.png": "1504b769303c7bde00fa578eeaad3c68e02aceabeb1242e556f1f8d19e4bdea5",
    "opencv-doc/hfs_001.jpg": "4bcbe0927a8b50f2487463894328da66cddf37f2daa88448258b72892d1f7a23",
    "opencv-doc/hfs_002.jpg": "21b07a5287dec0306846191abf720c352e57b2c6b42bb30885c9deb02664ada7",
    "opencv-doc/left01.jpg": "9621899098adffa1440c8264606bb7be535ccfd9ad126ae8e0bd9b0c5a5b8676",
    "opencv-doc/leuvenA.jpg": "b2977cdbd9fb3f94dadd6f76cf586d145676deb8a22b5f0f42149d21c058c09f",
    "opencv-doc/leuvenB.jpg": "5bb41a60038a2baa5d8ea0eaba55e6e3050d721b254cf79d8d8998d7e49d664a",
    "opencv-doc/licenseplate_motion.jpg": "ea6fa9cea75df91bec656d1d3b903111a9c0708c6a3b88f405a5156de38ff9d6",
    "opencv-doc/orange.jpg": "152c20d2f380ac985de25e474e1a5f06ed34b932191342099b8272a63a15a079",
    "opencv-doc/reg_home.png": "205d424fb53bc9a2d62d03e16a33f70d8609d4602e06194cf6218a3666226512",
    "opencv-doc/rubberwhale1.png": "eb312435369dac9efcc92f7e098edbd9ed8d7e6dfede8b3b4d8e3702cd80b796",
    "opencv-doc/scenetext01.jpg": "7f3041a7019ab4d33d2452bc757d8c4f38616bfde71431e12f7ec370d7b2018e",
    "opencv-doc/scenetext02.jpg": "d4295bff9f348012f91a2cf745753124f85041fe3c3717146c6759c4cd977211",
    "opencv-doc/scenetext03.jpg": "cadf4a3d29a7ba6fe976b53fa65f490cc2868375e8feb3d93f26029f05c662ca",
    "opencv-doc/scenetext04.jpg": "28e08d142a04f92f96d01ff2674f7804321841cba95bd968980cdc85ef0af6df",
    "opencv-doc/scenetext05.jpg": "63985ac1a9989a8320605d5be0ec285af0c6304a78cc9cc5de6c2c7c435f7c0b",
    "opencv-doc/scenetext06.jpg": "e4d64f10bbfb27b2c5980cb048fd0abe20dd74868ba5460298de473ced53b518",
    "opencv-doc/stuff.jpg": "21cd00afbdd0727f445dd91c0a09633e6345ed5b05a3d2355453a1f3c314c6c5",
    "skimage/astronaut.png": "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
    "skimage/brick.png": "7966caf324f6ba843118d98f7a07746d22f6a343430add0233eca5f6eaaa8fcf",
    "skimage/camera.png": "b0793d2adda0fa6ae899c03989482bff9a42d3d5690fc7e3648f2795d730c23a",
    "skimage/chelsea.png": "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb",
    "skimage/coffee.png": "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7",
    "skimage/coins.png": "f8d773fc9cfa6f4d8e5942dc34d0a0788fcaed2a4fefbbed0aef5398d7ef4cba",
    "skimage/grass.png": "b6b6022426b38936c43a4ac09635cd78af074e90f42ffa8227ac8b7452d39f89",
    "skimage/gravel.png": "c48615b451bf1e606fbd72c0aa9f8cc0f068ab7111ef7d93bb9b0f2586440c12",
    "skimage/hubble_deep_field.jpg": "3a19c5dd8a927a9334bb1229a6d63711b1c0c767fb27e2286e7c84a3e2c2f5f4",
    "skimage/ihc.png": "f8dd1aa387ddd1f49d8ad13b50921b237df8e9b262606d258770687b0ef93cef",
    "skimage/moon.png": "78739619d11f7eb9c165bb5d2efd4772cee557812ec847532dbb1d92ef71f577",
    "skimage/motorcycle_left.png": "db18e9c4157617403c3537a6ba355dfeafe9a7eabb6b9b94cb33f6525dd49179",
    "skimage/motorcycle_right.png": "5fc913ae870e42a4b662314bc904d1786bcad8e2f0b9b67dba5a229406357797",
    "skimage/retina.jpg": "38a07f36f27f095e818aea7b96d34202c05176d30253c66733f2e00379e9e0e6",
    "skimage/rocket.jpg": "c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c",
    "sklearn/china.jpg": "8378025ad2519d649d02e32bd98990db4ab572357d9f09841c2fbfbb4fefad29",
    "sklearn/flower.jpg": "a77f6ec41e353afdf8bdff2ea981b2955535d8d83294f8cfa49cf4e423dd5638",
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def unpack(kind: str, package: str, work: Path) -> Path:
    """The package's files under a fresh directory (nothing is installed)."""
    out = work / package
    out.mkdir()
    if kind == "deb":
        subprocess.run(["apt-get", "download", package], cwd=work, check=True, capture_output=True)
        deb = sorted(work.glob(f"{package}_*.deb"))[-1]
        subprocess.run(["dpkg-deb", "-x", str(deb), str(out)], check=True)
    else:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(work), package],
                       check=True, capture_output=True)
        wheel = sorted(glob.glob(str(work / f"{package.replace('-', '_')}-*.whl")))[-1]
        with zipfile.ZipFile(wheel) as z:
            z.extractall(out)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dest", type=Path, help="folder to fill (created); pass it as data.root=")
    args = p.parse_args(argv)
    dest = args.dest.expanduser()
    mismatched, missing = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for folder, (kind, package, inside) in SOURCES.items():
            names = [n for n in SHA256 if n.split("/", 1)[0] == folder]
            print(f"{package} ({kind}): {len(names)} photos", flush=True)
            unpacked = unpack(kind, package, Path(tmp))
            for name in names:
                src = unpacked / RENAMED[name] if name in RENAMED else unpacked / inside / name.split("/", 1)[1]
                if not src.is_file():
                    missing.append(name)
                    continue
                target = dest / name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, target)
                if sha256(target) != SHA256[name]:
                    mismatched.append(name)
    print(f"{len(SHA256) - len(missing)} photos in {dest} ({len(HELD_OUT_PHOTOS)} of them held out for evaluation)")
    if mismatched:
        print(f"differ from the recorded files (another package version): {', '.join(mismatched)}")
    if missing:
        print(f"not found in the packages: {', '.join(missing)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
