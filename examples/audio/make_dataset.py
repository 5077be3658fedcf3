"""Writes examples/audio/data/<language>/<recording>.ogg: spoken-language identification on real
recordings, from Debian's klettres-data package (apt-get install klettres-data).

KLettres, KDE's alphabet-learning game, ships 1,836 human recordings of letters and syllables in 20
languages (Ogg Vorbis, 22.05, 44.1 or 128 kHz, mono and stereo, 0.25 to 6.5 s), each language
recorded by its own volunteers; the game's `sounds.xml` per language names each file's letter or
syllable. The files are under GPL-2+ (debian/copyright). This script chooses the task the data
supports across languages: which language a recording is in, over the languages with at least
MIN_FILES recordings, at most `--per-class` of each (sorted by path, so the same files every time).
The files are copied as they are (Ogg): Lamina's ingestion turns them into WAV.

Each language has few speakers, so the task is partly speaker identification; the example's README
says so. `python examples/audio/make_dataset.py [--per-class N] [--out DIR]`.
"""

import argparse
import os
import shutil
import sys

KLETTRES = "/usr/share/klettres"
MIN_FILES = 80


def recordings(root: str = KLETTRES):
    """Language code -> its .ogg files (letters and syllables), sorted."""
    out = {}
    for lang in sorted(os.listdir(root)):
        files = []
        for folder, _, names in os.walk(os.path.join(root, lang)):
            files += [os.path.join(folder, n) for n in names if n.endswith(".ogg")]
        if files:
            out[lang] = sorted(files)
    return out


def write_dataset(out_dir: str, per_class: int = 100, min_files: int = MIN_FILES, root: str = KLETTRES) -> dict:
    """Copies the chosen recordings to out_dir/<language>/; returns {language: count}."""
    if not os.path.isdir(root):
        raise SystemExit(f"{root} is missing: apt-get install klettres-data")
    counts = {}
    for lang, files in recordings(root).items():
        if len(files) < min_files:
            continue
        os.makedirs(os.path.join(out_dir, lang), exist_ok=True)
        for path in files[:per_class]:
            kind = os.path.basename(os.path.dirname(path))  # alpha or syllab
            shutil.copyfile(path, os.path.join(out_dir, lang, f"{kind}-{os.path.basename(path)}"))
        counts[lang] = min(per_class, len(files))
    return counts


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--per-class", type=int, default=100)
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "languages"))
    args = p.parse_args(argv)
    counts = write_dataset(args.out, args.per_class)
    print(f"{sum(counts.values())} recordings in {len(counts)} languages under {args.out}: {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
