"""A churn CSV of the kind people export from a spreadsheet, generated for the tests.

What makes it messy, each on purpose:
- a UTF-8 byte-order mark, `;` as the delimiter and CRLF line ends (a European Excel export);
- headers with spaces, symbols, non-ASCII letters and a leading digit (`monthly spend`,
  `Preis (€)`, `Größe`, `2nd_choice`), one blank header, and two names that clean to the same
  text (`monthly spend` and `monthly_spend`);
- an ID column, a constant column, a free-text column with quotes, `;` and line breaks inside
  quoted cells, a date column written day-first, yes/no booleans;
- numbers written `$1,234.50`, `12%` and `4.90 €`, with blanks and `n/a` among them;
- a category written after a space (` basic`, as UCI Adult writes every value) and `?` for a missing one;
- a skewed yes/no label (about 11% `yes`), blank in a few rows;
- optionally, rows with a field too many.

The label is `yes` for customers without auto-renewal who spend under $90 a month (2% of the
labels flipped), so a model can learn it and a test can tell a working pipeline from a broken one.
"""

import random
from typing import Dict, List

COLUMNS = ["customer_id", "Signup Date", "monthly spend", "monthly_spend", "Preis (€)", "Größe", "2nd_choice", "",
           "plan", "country", "notes", "auto_renew", "discount", "churned"]
LABEL = "churned"
_WORDS = ("great service but the app is slow sometimes; support answered quickly".split()
          + "price went up again and the invoice was confusing, I want a refund".split()
          + "works fine for our team, the \"pro\" features are worth it".split())


def messy_rows(n: int = 400, seed: int = 0) -> List[Dict[str, str]]:
    """The rows, as strings keyed by COLUMNS (the blank header is the key '')."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        plan = rng.choice(["basic", "basic", "pro", "enterprise"])
        renew = rng.random() < 0.7
        spend = round(rng.uniform(5, 200) * (3 if plan == "enterprise" else 1), 2)
        day, month, year = rng.randint(1, 28), rng.randint(1, 12), rng.randint(2015, 2024)
        churned = (not renew and spend < 90) != (rng.random() < 0.02)
        words = rng.sample(_WORDS, rng.randint(6, 14))
        note = " ".join(words)
        if i % 17 == 0:
            note = note[:40] + "\nsecond line of the note"
        rows.append({
            "customer_id": str(100_000 + i * 7),
            "Signup Date": f"{day:02d}/{month:02d}/{year}",
            "monthly spend": "" if i % 23 == 5 else ("n/a" if i % 29 == 3 else f"${spend:,.2f}"),
            "monthly_spend": f"{spend * rng.uniform(0.8, 1.2):.1f}",
            "Preis (€)": f"{rng.uniform(1, 9):.2f} €",
            "Größe": str(rng.randint(150, 200)),
            "2nd_choice": "?" if i % 13 == 4 else rng.choice(["A", "B", "C"]),
            "": str(rng.randint(0, 9)),
            "plan": " " + plan,
            "country": "DE",
            "notes": note,
            "auto_renew": "yes" if renew else "no",
            "discount": f"{rng.choice([0, 5, 10, 15])}%",
            LABEL: "" if i % 41 == 7 else ("yes" if churned else "no"),
        })
    return rows


def write_messy_csv(path: str, n: int = 400, seed: int = 0, broken: tuple = ()) -> List[Dict[str, str]]:
    """Writes the file (BOM, `;`, CRLF, quoting where a cell needs it) and returns its rows.

    The rows at the indexes in `broken` get a field too many (a stray `;` at the end), as a
    hand-edited export has; they are still returned, so a test can leave them out itself.
    """
    import csv
    import io
    import os

    rows = messy_rows(n, seed)
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=";", lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(COLUMNS)
    for i, r in enumerate(rows):
        writer.writerow([r[c] for c in COLUMNS] + (["oops"] if i in broken else []))
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"\xef\xbb\xbf" + buf.getvalue().encode("utf-8"))
    return rows
