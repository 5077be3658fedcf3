"""A CSV's columns and the role each plays: what Lamina does with a user's file before the run.

`profile_data(spec)` checks the data files (`lamina.components.table_source.scan_table`: encoding,
header, rows, labels) and counts each column in one pass. `infer_roles` decides each column's
role from those counts when the spec names no features, with the reason for each:

| role        | when                                                   | becomes                         |
|-------------|--------------------------------------------------------|---------------------------------|
| id          | a name like `id`, `*_id`, `uuid`; or unique per row    | left out (`data.exclude`)        |
| rare values | most values in one row only (names, tickets, cabins)   | left out (`data.exclude`)        |
| constant    | one value in every row, or no values                   | left out                         |
| date        | dates or timestamps in one layout                      | calendar features                |
| numeric     | numbers (`$1,234`, `12%`, thousands separators parsed) | z-score (+ missing indicator)    |
| boolean     | two values spelled yes/no, true/false, y/n, 1/0 ...    | categorical                      |
| text        | long strings with many distinct values                 | a small Transformer              |
| categorical | anything else                                          | an embedding                     |

The label's task is inferred too (regression for a numeric label with many values) unless the
spec sets `model.head.type`, and its class balance is reported. `resolve_spec` writes the roles
into the spec (features, exclusions, head, metrics), so the pipeline is still built from the
spec alone; the roles table says what was decided and why, and every role can be overridden by
naming the feature's type (or excluding it) in the spec.
"""

import os
import dataclasses
import re
from typing import Dict, List, Optional

from lamina.cells import BOOLEAN_SPELLINGS, NOT_FINITE_TOKENS
from lamina.components.column_stats import ColumnStats
from lamina.components.table_source import TablePolicy, TableScan, scan_table
from lamina.spec import Spec

_ID_NAME = re.compile(r"(^|[^a-z0-9])(id|uuid|guid)$|^id[^a-z0-9]|^(row|record)_?(number|no|num)$", re.IGNORECASE)
_CAMEL_ID = re.compile(r"[a-z]I[dD]$")  # customerId, userID; case-sensitive, so 'paid' and 'valid' are not IDs
# A label with more distinct numbers than this is a regression target (unless the spec says otherwise).
REGRESSION_MIN_DISTINCT = 20
IMBALANCE_SHARE = 0.2
TEXT_MIN_AVERAGE_CHARS = 30
TEXT_MIN_AVERAGE_WORDS = 4
# A string column with more distinct values than this, most of them in one row only, is left out.
RARE_MIN_DISTINCT = 20
RARE_SINGLES_SHARE = 0.5
NAME_MAX_WORDS = 6
# The Transformer a free-text column gets in a tabular model: small, trained with the rest.
SMALL_TEXT_ENCODER = {"type": "transformer", "num_layers": 1, "num_heads": 2, "hidden_dim": 32,
                      "intermediate_dim": 64, "max_length": 48, "vocabulary_size": 2000, "dropout": 0.1}


@dataclasses.dataclass(frozen=True)
class ColumnRole:
    """What Lamina does with one column, and why."""

    name: str
    role: str  # label | id | constant | date | numeric | boolean | text | categorical | declared
    type: Optional[str]  # the feature type, or None when the column is left out
    reason: str
    missing: int = 0
    missing_indicator: bool = False
    format: Optional[str] = None

    @property
    def excluded(self) -> bool:
        return self.type is None and self.role != "label"


@dataclasses.dataclass
class DataProfile:
    scans: List[TableScan]
    roles: List[ColumnRole]
    task: str
    task_reason: str
    classes: Dict[str, int]  # label value -> rows (classification)

    @property
    def rows(self) -> int:
        return sum(s.kept_rows for s in self.scans)

    @property
    def imbalanced(self) -> bool:
        total = sum(self.classes.values())
        return bool(total) and len(self.classes) > 1 and min(self.classes.values()) / total < IMBALANCE_SHARE


def policy(spec: Spec) -> TablePolicy:
    d = spec.data
    return TablePolicy(format=d.format, delimiter=d.delimiter, encoding=d.encoding, bad_rows=d.bad_rows, max_bad_rows=d.max_bad_rows,
                     label=d.label, max_missing_labels=d.max_missing_labels,
                     sequences=tuple(sorted(d.sequence_delimiters.items())),
                     images=tuple(f.name for f in d.features or [] if f.type is not None and f.type.value == "image"),
                     image_root=os.path.dirname(spec.resolve(d.path)), max_pixels=d.images.max_pixels,
                     audio=tuple(f.name for f in d.features or [] if f.type is not None and f.type.value == "audio"),
                     max_seconds=d.audio.max_seconds)


def _merged(scans: List[TableScan], name: str) -> ColumnStats:
    """One column's counts over every file (the distinct values of the first files only when many)."""
    stats = [s.column(name) for s in scans]
    if len(stats) == 1:
        return stats[0]
    out = ColumnStats(name, stats[0].position)
    for c in stats:
        for field in ("present", "blank", "numbers", "plain_numbers", "integers", "number_tokens", "booleans",
                      "total_length", "words", "total", "total_sq", "sum_count", "lists", "ascii_cells", "spaceless"):
            setattr(out, field, getattr(out, field) + getattr(c, field))
        out.max_length = max(out.max_length, c.max_length)
        out.not_numbers += c.not_numbers[: 5 - len(out.not_numbers)]
        for k, v in c.dates.items():
            out.dates[k] = out.dates.get(k, 0) + v
        out.distinct_overflow |= c.distinct_overflow
        for k, v in c.distinct.items():
            out.distinct[k] = out.distinct.get(k, 0) + v
    return out


def _date_format(c: ColumnStats) -> Optional[str]:
    if not c.dates or sum(c.dates.values()) < 0.95 * c.present:
        return None
    if "%d/%m/%Y" in c.dates:  # a first number above 12 proves day-first for the whole column
        return "%d/%m/%Y"
    return max(c.dates, key=c.dates.get)


def column_role(c: ColumnStats, rows: int) -> ColumnRole:
    """The role of a (non-label) column from its counts."""
    missing = c.missing
    if c.present == 0:
        return ColumnRole(c.name, "constant", None, "no values in any row", missing)
    if c.lists:
        return ColumnRole(c.name, "sequence", "sequence", f"lists of values in {c.lists} rows: a sequence, "
                          f"read by an LSTM", missing)
    if c.n_distinct == 1 and not c.distinct_overflow:
        value = next(iter(c.distinct))
        return ColumnRole(c.name, "constant", None, f"one value ({value!r}) in every row"
                          + (f" but {missing} blank" if missing else ""), missing)
    unique = not c.distinct_overflow and c.n_distinct == c.present == rows
    if _ID_NAME.search(c.name) or _CAMEL_ID.search(c.name):
        return ColumnRole(c.name, "id", None, "its name says it is an identifier", missing)
    date_format = _date_format(c)
    if date_format:
        return ColumnRole(c.name, "date", "date", f"dates written {date_format}: year, month, day of week, hour"
                          + (f"; {missing} missing, imputed" if missing else ""), missing, format=date_format)
    average_chars = c.total_length / c.present
    average_words = average_word_count(c)
    short = average_words < 3 and average_chars < TEXT_MIN_AVERAGE_CHARS
    if unique and rows >= 20 and (c.all_integers or (not c.all_numbers and short)):
        return ColumnRole(c.name, "id", None, f"unique in each of the {rows} rows", missing)
    if c.distinct_overflow and not c.all_numbers and short:
        return ColumnRole(c.name, "id", None, f"more than {len(c.distinct) or 'many'} distinct short values", missing)
    values = {v.lower() for v in c.distinct}
    if not c.distinct_overflow and len(values) == 2 and values <= set(BOOLEAN_SPELLINGS):
        return ColumnRole(c.name, "boolean", "categorical", f"two values: {', '.join(sorted(c.distinct))}", missing)
    if c.all_numbers:
        symbols = c.numbers - c.plain_numbers
        reason = "numbers" + (f" ({symbols} written with $, %, or thousands separators, parsed)" if symbols else "")
        if missing:
            infinities = [(v, n) for v, n in c.distinct.items() if v.lower() in NOT_FINITE_TOKENS]
            reason += (f"; {missing} missing"
                       + (f" ({sum(n for _, n in infinities)} of them infinite, e.g. {infinities[0][0]!r})"
                          if infinities else "")
                       + ": imputed with the mean, plus a missing indicator")
        return ColumnRole(c.name, "numeric", "numeric", reason, missing, missing_indicator=bool(missing))
    rare = _rare_values(c, average_words, average_chars)
    if rare:
        return ColumnRole(c.name, "rare values", None, rare, missing)
    many = c.distinct_overflow or c.n_distinct >= 0.5 * c.present
    if many and (average_chars >= TEXT_MIN_AVERAGE_CHARS or average_words >= TEXT_MIN_AVERAGE_WORDS):
        return ColumnRole(c.name, "text", "text", f"free text: {average_words:.1f} words on average, "
                          f"{'many' if c.distinct_overflow else c.n_distinct} distinct values", missing)
    reason = f"{'many' if c.distinct_overflow else c.n_distinct} distinct values"
    if c.numbers and c.not_numbers:
        examples = ", ".join(f"{cell!r} (line {line})" for line, cell in c.not_numbers[:3])
        reason += (f"; {c.numbers} cells are numbers but others are not, e.g. {examples}: read as categories "
                   f"(declare it numeric to stop the run on them instead)")
    return ColumnRole(c.name, "categorical", "categorical", reason, missing)


def average_word_count(c: ColumnStats) -> float:
    """Words per cell: space-separated words, and each character of a script written without spaces."""
    return (c.words + c.spaceless) / max(c.present, 1)


def _looks_like_names(values: List[str]) -> bool:
    """Whether most values are a few capitalized words ('Allen, Miss Elisabeth Walton'), as names are."""
    sample = values[:500]
    capitalized = 0
    for v in sample:
        words = [w for w in re.split(r"[\s,]+", v) if w[:1].isalpha()]
        if 1 < len(words) <= NAME_MAX_WORDS and all(w[0].isupper() for w in words):
            capitalized += 1
    return bool(sample) and capitalized >= 0.8 * len(sample)


def _rare_values(c: ColumnStats, average_words: float, average_chars: float) -> Optional[str]:
    """Why a column of strings is left out as one whose values are too rare to learn from (names, ticket
    numbers, cabins), or None. Long free text is text, not this."""
    if c.distinct_overflow or c.n_distinct <= RARE_MIN_DISTINCT:
        return None
    singles = sum(1 for n in c.distinct.values() if n == 1)
    if singles < RARE_SINGLES_SHARE * c.present:
        return None
    said = f"{c.n_distinct} distinct values in {c.present} rows, {singles} of them in one row only"
    if _looks_like_names(list(c.distinct)):
        return f"{said}, capitalized like names: nothing shared across rows to learn from"
    if average_words < TEXT_MIN_AVERAGE_WORDS and average_chars < TEXT_MIN_AVERAGE_CHARS:
        return f"{said}: too rare to learn from (declare it categorical to keep it)"
    return None


def _label_task(spec: Spec, c: ColumnStats) -> (str, str):
    if "head" in spec.model.model_fields_set and "type" in spec.model.head.model_fields_set:
        return spec.task, f"model.head.type is {spec.task!r}"
    if c.all_numbers and (c.distinct_overflow or c.n_distinct > REGRESSION_MIN_DISTINCT):
        return "regression", f"numbers with {'many' if c.distinct_overflow else c.n_distinct} distinct values"
    return "classification", f"{c.n_distinct} classes"


def infer_roles(spec: Spec, scans: List[TableScan]) -> DataProfile:
    """Each column's role: the spec's declarations, else inferred (see the module docstring)."""
    names = scans[0].names
    rows = sum(s.kept_rows for s in scans)
    declared = {f.name: f for f in spec.data.features or []}
    roles = []
    label = _merged(scans, spec.data.label)
    task, task_reason = _label_task(spec, label)
    fc = spec.forecast if task == "forecast" else None
    forecast_roles = {}
    if fc is not None:
        forecast_roles = {**{c: ("timestamp", "forecast.timestamp") for c in fc.timestamp_columns},
                          **({fc.series_id: ("series ID", "forecast.series_id")} if fc.series_id else {}),
                          **{c: ("covariate", "forecast.known_future: known for the horizon too")
                             for c in fc.known_future},
                          **{c: ("covariate", "forecast.past_only: known up to the forecast origin")
                             for c in fc.past_only}}
    for name in names:
        c = _merged(scans, name)
        if name in forecast_roles:
            role, reason = forecast_roles[name]
            roles.append(ColumnRole(name, role, "sequence" if role == "covariate" else None, reason, c.missing))
        elif fc is not None and name != spec.data.label:
            roles.append(ColumnRole(name, "unused", None, "not named in the forecast section", c.missing))
        elif name == spec.data.label:
            roles.append(ColumnRole(name, "label", None, f"data.label; {task}: {task_reason}", c.missing))
        elif name in spec.data.exclude:
            roles.append(ColumnRole(name, "excluded", None, "data.exclude", c.missing))
        elif spec.data.features is not None:
            f = declared.get(name)
            if f is None:
                roles.append(ColumnRole(name, "unused", None, "not in data.features", c.missing))
            else:
                kind = f.type.value if f.type else column_role(c, rows).type or "categorical"
                roles.append(ColumnRole(name, "declared", kind, "data.features", c.missing, f.missing_indicator,
                                        f.format))
        else:
            roles.append(column_role(c, rows))
    classes = dict(sorted(label.distinct.items(), key=lambda kv: (-kv[1], kv[0]))) if task == "classification" else {}
    return DataProfile(scans, roles, task, task_reason, classes)


def media_folder_problem(folder: str, extensions) -> Optional[str]:
    """Why a local folder of class subfolders cannot be trained on: no file in them has one of `extensions`
    (what they hold instead is counted), or None."""
    from lamina.constants import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS

    classes = [d for d in sorted(os.listdir(folder)) if d[:1] != "." and os.path.isdir(os.path.join(folder, d))]
    kinds: Dict[str, int] = {}
    for c in classes:
        for f in os.listdir(os.path.join(folder, c)):
            if f[:1] != "." and os.path.isfile(os.path.join(folder, c, f)):
                ext = os.path.splitext(f)[1].lower() or "(no extension)"
                kinds[ext] = kinds.get(ext, 0) + 1
    if any(ext in extensions for ext in kinds):
        return None
    found = ", ".join(f"{n} {ext}" for ext, n in sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0]))[:8])
    supported = []
    if set(IMAGE_EXTENSIONS) & set(extensions):
        supported.append(f"images ({', '.join(e for e in IMAGE_EXTENSIONS if e in extensions)})")
    if set(AUDIO_EXTENSIONS) & set(extensions):
        supported.append(f"audio files ({', '.join(e for e in AUDIO_EXTENSIONS if e in extensions)})")
    return (f"{folder}: no file to train on in its {len(classes)} class subfolder(s) (found {found or 'no files'}); "
            f"Lamina trains on one subfolder per class holding {' or '.join(supported)}")


def profile_data(spec: Spec, files: Optional[List[str]] = None) -> DataProfile:
    """Checks every data file and infers the columns' roles. Raises CsvInputError on bad input."""
    files = files if files is not None else spec.check_data_exists()
    scans = [scan_table(f, policy(spec)) for f in files]
    if spec.task == "forecast":
        check_forecast_rows(spec, scans)
    return infer_roles(spec, scans)


def check_forecast_rows(spec: Spec, scans: List[TableScan]) -> None:
    """Every row's timestamp, target and covariates, as ForecastExampleGen reads them, in one streaming pass:
    a bad cell stops the run here, before TFX starts, with the file, line and column."""
    from lamina.components.forecast_windows import WindowSettings, check_columns, file_points

    settings = WindowSettings.from_spec(spec)
    for scan in scans:
        check_columns(scan.names, settings, scan.path)
        for _ in file_points(scan.path, scan.names, scan.delimiter, settings, spec.data.format, spec.data.encoding):
            pass


def resolve_spec(spec: Spec, profile: DataProfile) -> Spec:
    """The spec with the inferred roles written in: features, exclusions, the head and its metrics.

    A spec that names its features is returned as it is (its head too).
    """
    if spec.data.features is not None or spec.task == "forecast":
        return spec
    d = spec.model_dump(mode="json", exclude_unset=True)
    features = {}
    for r in profile.roles:
        if r.type is None:
            continue
        entry = {"type": r.type}
        if r.missing_indicator:
            entry["missing_indicator"] = True
        if r.format:
            entry["format"] = r.format
        features[r.name] = entry
    d["data"]["features"] = features
    d["data"]["exclude"] = sorted(set(spec.data.exclude) | {r.name for r in profile.roles if r.excluded})
    model = d.setdefault("model", {})
    model.setdefault("head", {})["type"] = profile.task
    encoders = model.setdefault("encoders", {})
    for r in profile.roles:
        if r.type == "text" and r.name not in encoders and "text" not in encoders:
            encoders[r.name] = dict(SMALL_TEXT_ENCODER)
    if profile.task == "regression" and "metrics" not in d.get("evaluation", {}):
        d.setdefault("evaluation", {})["metrics"] = ["mae", "rmse"]
    return Spec.from_dict(d, base_dir=spec.base_dir)


def format_roles(profile: DataProfile) -> str:
    """The roles table people read: one line per column with what Lamina does with it and why."""
    width = max(len(r.name) for r in profile.roles)
    width = min(max(width, 6), 32)
    lines = [f"  {'column':<{width}}  {'role':<11}  {'feature':<11}  reason"]
    for r in profile.roles:
        name = r.name if len(r.name) <= width else r.name[: width - 1] + "…"
        lines.append(f"  {name:<{width}}  {r.role:<11}  {r.type or '-':<11}  {r.reason}")
    return "\n".join(lines + [f"  {n}" for n in profile_notes(profile)])


def profile_notes(profile: DataProfile) -> List[str]:
    """The lines under the roles table: rows, dialect, rows left out, class balance."""
    scans = profile.scans
    rows = sum(s.rows for s in scans)
    notes = [f"{rows} rows in {len(scans)} file(s), delimiter {scans[0].delimiter!r}, encoding {scans[0].encoding}"]
    bad = sum(s.bad_row_count for s in scans)
    if bad:
        notes.append(f"{bad} row(s) with the wrong number of fields skipped (data.bad_rows: skip)")
    unlabelled = sum(s.missing_label for s in scans)
    if unlabelled:
        notes.append(f"{unlabelled} row(s) without a label left out of training and evaluation")
    if profile.classes:
        total = sum(profile.classes.values())
        shares = ", ".join(f"{k!r} {v / total:.1%}" for k, v in list(profile.classes.items())[:6])
        notes.append(f"classes: {shares}" + ("; imbalanced: class weights set (training.class_weights: auto)"
                                             if profile.imbalanced else ""))
    return notes
