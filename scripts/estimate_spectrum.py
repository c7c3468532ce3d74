"""Estimate MACO's natural-image magnitude spectrum and write it to an .npz file.

    .venv/bin/python scripts/estimate_spectrum.py                      # the built-in photos -> the shipped file
    .venv/bin/python scripts/estimate_spectrum.py my_images/ --out my_spectrum.npz

Default input: the library's built-in real photos (scikit-learn, scikit-image and matplotlib
samples) at full resolution, minus the four that are not natural scenes of the kind ImageNet shows
(coins, moon: textures of one material; camera, clock: grey). FOLDER: every .png/.jpg/.jpeg/.bmp/.tif
in it. Each image gives its centred square and random squares resized to --size; see
``ux.featviz.estimate_spectrum``. Use the file with ``ux.featviz.maco(..., spectrum="my_spectrum.npz")``
or ``uxai visualize ... --spectrum my_spectrum.npz``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from unified_xai.featviz.spectrum import ESTIMATE_SIZE, SPECTRUM_FILE, estimate_spectrum, save_spectrum

SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
LEFT_OUT = {"coins", "moon", "camera", "clock"}


def to_tensor(array: np.ndarray) -> torch.Tensor:
    array = np.asarray(array)
    if array.ndim == 3:
        array = array[..., :3]
    scale = 255.0 if array.dtype == np.uint8 else 1.0
    x = torch.from_numpy(array.astype(np.float32) / scale)
    return x[None] if x.ndim == 2 else x.permute(2, 0, 1)


def builtin_images():
    from unified_xai.data.photos import PHOTOS

    names = [p.name for p in PHOTOS if p.name not in LEFT_OUT]
    return names, [to_tensor(p.load()) for p in PHOTOS if p.name not in LEFT_OUT]


def folder_images(folder: Path):
    from PIL import Image

    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES)
    if not paths:
        raise SystemExit(f"no images ({', '.join(sorted(SUFFIXES))}) in {folder}")
    return [p.name for p in paths], [to_tensor(np.asarray(Image.open(p).convert("RGB"))) for p in paths]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", nargs="?", type=Path, help="folder of images (default: the built-in photos)")
    parser.add_argument("--out", type=Path, default=None, help=f"output .npz (default: {SPECTRUM_FILE})")
    parser.add_argument("--size", type=int, default=ESTIMATE_SIZE, help="side of the estimated spectrum's image")
    parser.add_argument("--crops", type=int, default=16, help="squares per image (centre + random)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    names, images = folder_images(args.folder) if args.folder else builtin_images()
    spectra = estimate_spectrum(images, size=args.size, crops_per_image=args.crops, seed=args.seed)
    source = (f"mean |rfft2| of {len(images)} images x {args.crops} squares at {args.size} px"
              f" ({'folder ' + str(args.folder) if args.folder else 'built-in photos'}: {', '.join(names)}),"
              f" seed {args.seed}")
    out = save_spectrum(spectra, args.out or SPECTRUM_FILE, source)
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB): {source}")


if __name__ == "__main__":
    main()
