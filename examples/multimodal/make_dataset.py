"""Writes examples/multimodal/products.csv and its images: product listings whose category needs the
photo and the description together.

Synthetic, with a fixed seed; the CSV and the PNGs are committed and this script is how they were
made (`python examples/multimodal/make_dataset.py`). Each listing has:

- `Photo` (photos/<id>.png, 32x32): a round or a square object, in a random colour, size and place, on
  a noisy background. The shape is half of the category.
- `Tag photo` (tags/<id>.png, 32x32): the price tag, a stripe pattern; it carries nothing about the
  category (a second image feature, as listings often have).
- `Description`: a sentence naming the material, wooden (oak, pine, walnut, bamboo, wooden) or metal
  (steel, iron, aluminium, brass, metal), among words shared by both. The material is the other half.
- `Price ($)`: written like a spreadsheet's "$1,234.50", slightly higher for metal: a weak hint.
- `Category`: round wood, square wood, round metal or square metal.

The photo alone or the text alone can tell two of the four categories apart at best (about 50%
accuracy); both together decide it.
"""

import csv
import os
import random

import numpy as np

ROWS = 800
SIZE = 32
WOOD = ["oak", "pine", "walnut", "bamboo", "wooden"]
METAL = ["steel", "iron", "aluminium", "brass", "metal"]
ITEMS = ["table", "lamp", "stool", "tray", "clock", "shelf", "bowl", "frame"]
OPENINGS = ["A handmade", "Our new", "This classic", "A sturdy", "The popular", "An elegant", "A simple"]
ROOMS = ["for the kitchen", "for the living room", "for the office", "for the garden", "for any room"]


def shape_image(rng: np.random.Generator, round_: bool) -> np.ndarray:
    image = rng.integers(0, 60, (SIZE, SIZE, 3)).astype(np.uint8) + np.uint8(rng.integers(0, 120))
    colour = rng.integers(120, 256, 3)
    radius = rng.integers(6, 12)
    cy, cx = rng.integers(radius + 1, SIZE - radius - 1, 2)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    if round_:
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2
    else:
        mask = (np.abs(yy - cy) <= radius * 0.85) & (np.abs(xx - cx) <= radius * 0.85)
    image[mask] = colour
    return image


def tag_image(rng: np.random.Generator) -> np.ndarray:
    image = np.full((SIZE, SIZE, 3), 230, np.uint8)
    period = int(rng.integers(3, 8))
    stripes = (np.arange(SIZE) // period) % 2 == 0
    if rng.random() < 0.5:
        image[stripes, :, :] = rng.integers(0, 120, 3)
    else:
        image[:, stripes, :] = rng.integers(0, 120, 3)
    return image


def write_png(path: str, image: np.ndarray) -> None:
    import tensorflow as tf

    tf.io.write_file(path, tf.io.encode_png(image))


def write(folder: str, rows: int = ROWS, seed: int = 3) -> str:
    rng = np.random.default_rng(seed)
    words = random.Random(seed)
    for sub in ("photos", "tags"):
        os.makedirs(os.path.join(folder, sub), exist_ok=True)
    path = os.path.join(folder, "products.csv")
    with open(path, "w", newline="", encoding="utf-8-sig") as f:
        out = csv.writer(f)
        out.writerow(["Listing ID", "Photo", "Tag photo", "Description", "Price ($)", "Category"])
        for i in range(rows):
            round_, wood = bool(rng.random() < 0.5), bool(rng.random() < 0.5)
            photo, tag = f"photos/{i:04d}.png", f"tags/{i:04d}.png"
            write_png(os.path.join(folder, photo), shape_image(rng, round_))
            write_png(os.path.join(folder, tag), tag_image(rng))
            material = words.choice(WOOD if wood else METAL)
            text = f"{words.choice(OPENINGS)} {material} {words.choice(ITEMS)} {words.choice(ROOMS)}."
            price = rng.lognormal(3.3 + (0.0 if wood else 0.15), 0.5)
            category = f"{'round' if round_ else 'square'} {'wood' if wood else 'metal'}"
            out.writerow([f"P-{5000 + i}", photo, tag, text, f"${price:,.2f}", category])
    return path


if __name__ == "__main__":
    print(write(os.path.dirname(os.path.abspath(__file__))))
