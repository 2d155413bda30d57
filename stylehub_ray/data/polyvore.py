"""Reader for the Polyvore-U layout (Lu et al. 2019, lzcn/Fashion-Hash-Net), with a quarantine.

The layout, as released and as ``stylehub_ray.synth.outfits`` writes it::

    ROOT/
      tuples_630/ tuples_53/          fixed length: user,top,bottom,shoe
      tuples_519/ tuples_32/          variable length: user,top,top,bottom,shoe (2nd top or -1)
        image_list_top                one image name per line; the line index is the item id
        image_list_bottom
        image_list_shoe
        tuples_{train,val,test}_posi
        tuples_{train,val,test}_nega          randomly mixed outfits
        tuples_{train,val,test}_nega_hard     positive outfits of other users
      images/291x291/<name>           the release's image folder (the generator writes
      images/<name>                   ``images/<category>/<hex>.jpg`` and lists ``<category>/...``)

The tuple files start with a header line (``user,top,bottom,shoe``; the variable-length sets
repeat ``top``), as in the release and in Fashion-Hash-Net's ``pd.read_csv`` loader; a file
without one is read as well. The column order of the variable-length sets, confirmed against
Fashion-Hash-Net (``data/README.md``, ``read_item_list``), is main top, second top (``-1`` when
the outfit has one top), bottom, shoe. The set is variable-length when its header has five
columns, or, without a header, when most rows of ``tuples_train_posi`` have five fields.

Negative rows follow the release's convention: with ``ratio = len(nega) // len(posi)``, row
``r`` of a negative file belongs to the user of positive row ``r // ratio`` (each row also
carries its user, which is what this reader returns).

Every data line becomes either one ``outfits`` row or one ``quarantine`` row, so per file
``rows_read == kept + quarantined``. ``row`` is the 0-based data-line index in its file (the
header not counted, quarantined lines counted), the same index the generator's oracle uses.
A quarantined line keeps its file, 1-based line number and text, the first bad field (left to
right), its value, a reason code (``wrong_column_count``, ``not_an_integer``,
``negative_user``, ``missing_required_item``, ``negative_item_id``, ``item_out_of_range``,
``item_without_image``; ``empty_image_name`` for image lists) and what was expected.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

CATEGORIES = ("top", "bottom", "shoe")
SPLITS = ("train", "val", "test")
KINDS = ("posi", "nega", "nega_hard")
# Fields of the two row formats; ``top2`` is the optional second top of the variable sets.
FIXED_FIELDS = ("user", "top", "bottom", "shoe")
VARIABLE_FIELDS = ("user", "top", "top2", "bottom", "shoe")
# Header lines as released: the variable-length sets name both top columns ``top``.
FIXED_HEADER = "user,top,bottom,shoe"
VARIABLE_HEADER = "user,top,top,bottom,shoe"
# The release's sets: 630 / 53 are fixed length, 519 / 32 variable; 53 / 32 are cold starters.
VARIABLE_LENGTH_SETS = ("519", "32")
SET_DIR = re.compile(r"^tuples_(\d+)$")
# Where image names resolve, first existing folder wins (the release unpacks 291x291.tar.gz).
IMAGE_DIRS = (os.path.join("images", "291x291"), "images")
# Only the positive files are required: FHN can make negatives online when they are absent.
REQUIRED_KINDS = ("posi",)

# Quarantine reasons, one per kind of bad input.
WRONG_COLUMN_COUNT = "wrong_column_count"
NOT_AN_INTEGER = "not_an_integer"
NEGATIVE_USER = "negative_user"
MISSING_REQUIRED_ITEM = "missing_required_item"  # -1 in top, bottom or shoe
NEGATIVE_ITEM_ID = "negative_item_id"  # below -1
ITEM_OUT_OF_RANGE = "item_out_of_range"  # >= rows of the image list
ITEM_WITHOUT_IMAGE = "item_without_image"  # the image list line is empty
EMPTY_IMAGE_NAME = "empty_image_name"  # (items table) an empty line in an image list

# An integer that fits int64 after trimming spaces (longer digit strings are not ids).
_INT_PATTERN = r"^\s*-?\d{1,18}\s*$"

OUTFIT_SCHEMA = pa.schema(
    [
        ("set_name", pa.string()),
        ("split", pa.string()),
        ("kind", pa.string()),
        ("row", pa.int32()),
        ("user", pa.int32()),
        ("top", pa.int32()),
        ("top2", pa.int32()),
        ("bottom", pa.int32()),
        ("shoe", pa.int32()),
        ("n_items", pa.int8()),
    ]
)
ITEM_SCHEMA = pa.schema(
    [
        ("set_name", pa.string()),
        ("category", pa.string()),
        ("item_id", pa.int32()),
        ("image", pa.string()),
        ("path", pa.string()),
        ("status", pa.string()),
    ]
)
QUARANTINE_SCHEMA = pa.schema(
    [
        ("table", pa.string()),
        ("source", pa.string()),
        ("line_number", pa.int64()),
        ("line", pa.string()),
        ("field", pa.string()),
        ("value", pa.string()),
        ("reason", pa.string()),
        ("expected", pa.string()),
    ]
)


@dataclass
class PolyvoreTables:
    """What :func:`read_polyvore` returns: typed tables plus the bookkeeping that reconciles."""

    outfits: pa.Table
    items: pa.Table
    quarantine: pa.Table
    # source file -> data lines read (header excluded); == kept + quarantined, per file.
    rows_read: dict[str, int]
    root: str = ""
    sets: list[str] = field(default_factory=list)
    variable_length: dict[str, bool] = field(default_factory=dict)
    image_dir: str = ""
    # Optional tuple files (negatives) that the folder does not have.
    absent_files: list[str] = field(default_factory=list)

    def kept_per_source(self) -> dict[str, int]:
        """Rows kept in ``outfits`` / ``items`` per source file, counted from the tables."""
        counts: dict[str, int] = {}
        groups = (
            (self.outfits, ["set_name", "split", "kind"], "row"),
            (self.items, ["set_name", "category"], "item_id"),
        )
        for table, keys, col in groups:
            if table.num_rows == 0:
                continue
            for g in table.group_by(keys).aggregate([(col, "count")]).to_pylist():
                folder = os.path.join(self.root, set_dir_name(g["set_name"]))
                if "split" in g:
                    leaf = tuple_file_name(g["split"], g["kind"])
                else:
                    leaf = image_list_name(g["category"])
                counts[os.path.join(folder, leaf)] = g[f"{col}_count"]
        return counts


def set_dir_name(set_name: str) -> str:
    return f"tuples_{set_name}"


def tuple_file_name(split: str, kind: str) -> str:
    return f"tuples_{split}_{kind}"


def image_list_name(category: str) -> str:
    return f"image_list_{category}"


def is_variable_set(set_name: str) -> bool:
    return str(set_name) in VARIABLE_LENGTH_SETS


def find_sets(path: str) -> list[str]:
    """Set names (``"630"``...) of the ``tuples_<digits>/`` folders under ``path``, by size."""
    if not os.path.isdir(path):
        return []
    names = []
    for entry in sorted(os.listdir(path)):
        m = SET_DIR.match(entry)
        if m and os.path.isdir(os.path.join(path, entry)):
            names.append(m.group(1))
    return sorted(names, key=lambda s: (-int(s), s))


def is_polyvore_layout(path: str) -> bool:
    """True when ``path`` holds at least one ``tuples_<digits>/`` folder with its image lists."""
    for set_name in find_sets(path):
        folder = os.path.join(path, set_dir_name(set_name))
        if all(os.path.isfile(os.path.join(folder, image_list_name(c))) for c in CATEGORIES):
            return True
    return False


def read_polyvore(path: str) -> PolyvoreTables:
    """Read every ``tuples_<U>/`` set under ``path`` into typed tables; bad rows to quarantine.

    Raises ``FileNotFoundError`` naming the file when an image list or a positive tuple file is
    missing, and ``ValueError`` when ``path`` holds no set at all.
    """
    root = os.path.abspath(path)
    sets = find_sets(root)
    if not sets:
        raise ValueError(
            f"{root}: not a Polyvore-U layout (expected tuples_<U>/ folders such as tuples_630/)"
        )
    image_dir = _image_dir(root)
    present = _files_under(image_dir)
    outfit_parts: list[pa.Table] = []
    item_parts: list[pa.Table] = []
    quarantine: list[dict] = []
    rows_read: dict[str, int] = {}
    variable: dict[str, bool] = {}
    absent: list[str] = []
    for set_name in sets:
        folder = os.path.join(root, set_dir_name(set_name))
        empty: dict[str, np.ndarray] = {}
        for cat in CATEGORIES:
            fn = os.path.join(folder, image_list_name(cat))
            if not os.path.isfile(fn):
                raise FileNotFoundError(f"{fn}: required image list is missing (set {set_name})")
            names, table, bad = _read_image_list(fn, set_name, cat, image_dir, present)
            empty[cat] = np.array([not n for n in names], dtype=bool)
            item_parts.append(table)
            quarantine.extend(bad)
            rows_read[fn] = len(names)
        for split in SPLITS:
            for kind in REQUIRED_KINDS:
                fn = os.path.join(folder, tuple_file_name(split, kind))
                if not os.path.isfile(fn):
                    raise FileNotFoundError(
                        f"{fn}: required tuple file is missing (set {set_name})"
                    )
        variable[set_name] = _detect_variable(
            os.path.join(folder, tuple_file_name("train", "posi")), set_name
        )
        for split in SPLITS:
            for kind in KINDS:
                fn = os.path.join(folder, tuple_file_name(split, kind))
                if not os.path.isfile(fn):
                    absent.append(fn)
                    continue
                cols, bad, n_lines = _read_tuples(fn, variable[set_name], empty)
                outfit_parts.append(_outfits_part(cols, set_name, split, kind))
                quarantine.extend(bad)
                rows_read[fn] = n_lines
    outfits = pa.concat_tables(outfit_parts) if outfit_parts else OUTFIT_SCHEMA.empty_table()
    items = pa.concat_tables(item_parts) if item_parts else ITEM_SCHEMA.empty_table()
    q = pa.Table.from_pylist(quarantine, schema=QUARANTINE_SCHEMA)
    tables = PolyvoreTables(
        outfits=outfits,
        items=items,
        quarantine=q,
        rows_read=rows_read,
        root=root,
        sets=sets,
        variable_length=variable,
        image_dir=image_dir,
        absent_files=absent,
    )
    _check_reconciles(tables)
    return tables


# --------------------------------------------------------------------------------------------
# Image lists
# --------------------------------------------------------------------------------------------
def _image_dir(root: str) -> str:
    for rel in IMAGE_DIRS:
        candidate = os.path.join(root, rel)
        if os.path.isdir(candidate):
            return candidate
    return os.path.join(root, IMAGE_DIRS[-1])


def _files_under(folder: str) -> set[str]:
    """Relative paths (``/``-separated) of every file under ``folder``: one walk, not a stat
    per item, because the release has ~400k images."""
    found: set[str] = set()
    if not os.path.isdir(folder):
        return found
    for dirpath, _dirs, files in os.walk(folder):
        rel = os.path.relpath(dirpath, folder)
        prefix = "" if rel == "." else rel.replace(os.sep, "/") + "/"
        found.update(prefix + f for f in files)
    return found


def _read_lines(fn: str) -> list[str]:
    """Lines of a text file without their terminators; a trailing newline adds no line."""
    with open(fn, encoding="utf-8", errors="replace", newline="") as f:
        text = f.read()
    text = text.removeprefix("\ufeff")
    if not text:
        return []
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def _read_image_list(
    fn: str, set_name: str, category: str, image_dir: str, present: set[str]
) -> tuple[list[str], pa.Table, list[dict]]:
    """Items of one image list. Empty names keep their id slot (ids are line numbers) but are
    quarantined, and outfits that point at them are quarantined too."""
    raw = _read_lines(fn)
    names = [ln.strip() for ln in raw]
    ids = [i for i, n in enumerate(names) if n]
    bad = [
        _q("items", fn, i + 1, line, "image", line, EMPTY_IMAGE_NAME, "an image file name")
        for i, line in enumerate(raw)
        if not names[i]
    ]
    kept = [names[i] for i in ids]
    prefix = os.path.join(image_dir, "")
    table = pa.table(
        {
            "set_name": _const_str(set_name, len(ids)),
            "category": _const_str(category, len(ids)),
            "item_id": pa.array(ids, pa.int32()),
            "image": pa.array(kept, pa.string()),
            "path": pa.array([prefix + n for n in kept], pa.string()),
            "status": pa.array(
                ["present" if n in present else "missing" for n in kept], pa.string()
            ),
        },
        schema=ITEM_SCHEMA,
    )
    return names, table, bad


# --------------------------------------------------------------------------------------------
# Tuple files
# --------------------------------------------------------------------------------------------
def _is_header(line: str) -> bool:
    return line.split(",", 1)[0].strip().lower() == "user"


def _detect_variable(fn: str, set_name: str) -> bool:
    """Five columns means variable length: from the header, else the commonest row width."""
    lines = _read_lines(fn)
    if lines and _is_header(lines[0]):
        return len(lines[0].split(",")) == len(VARIABLE_FIELDS)
    widths = [len(ln.split(",")) for ln in lines[:10_000] if ln.strip()]
    if not widths:
        return is_variable_set(set_name)
    values, counts = np.unique(widths, return_counts=True)
    return int(values[np.argmax(counts)]) == len(VARIABLE_FIELDS)


def _read_tuples(
    fn: str, variable: bool, empty: dict[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], list[dict], int]:
    """Parse one tuple file, vectorised: returns kept columns, quarantine rows, lines read.

    ``empty``: category -> bool per image-list line, True where the line names no image (its
    length is the number of ids of the category).
    """
    lines = _read_lines(fn)
    first_line = 1
    if lines and _is_header(lines[0]):
        lines = lines[1:]
        first_line = 2  # file line number of data row 0
    fields = VARIABLE_FIELDS if variable else FIXED_FIELDS
    width = len(fields)
    n = len(lines)
    arr = pa.array(lines, pa.string())
    parts = pc.split_pattern(arr, ",")
    n_fields = pc.list_value_length(parts).to_numpy(zero_copy_only=False)
    good = n_fields == width
    # Bad rows only: row -> (field, value, reason, expected); rows are rarely bad.
    bad: dict[int, tuple[str, str, str, str]] = {}
    for r in np.flatnonzero(~good).tolist():
        bad[r] = (
            "row",
            str(n_fields[r]),
            WRONG_COLUMN_COUNT,
            f"{width} comma-separated fields ({','.join(fields)})",
        )

    rows_ok = np.flatnonzero(good)
    values = np.zeros((len(rows_ok), width), dtype=np.int64)
    keep_ok = np.ones(len(rows_ok), dtype=bool)
    if len(rows_ok):
        flat = pc.list_flatten(parts.filter(pa.array(good)))
        is_int = pc.match_substring_regex(flat, _INT_PATTERN)
        cleaned = pc.if_else(is_int, pc.utf8_trim_whitespace(flat), pa.scalar("0"))
        values = pc.cast(cleaned, pa.int64()).to_numpy().reshape(-1, width)
        codes = _field_codes(
            values, is_int.to_numpy(zero_copy_only=False).reshape(-1, width), fields, empty
        )
        first_bad = np.argmax(codes > 0, axis=1)
        keep_ok = codes[np.arange(len(rows_ok)), first_bad] == 0
        for k in np.flatnonzero(~keep_ok).tolist():
            j = int(first_bad[k])
            code = int(codes[k, j])
            value = flat[k * width + j].as_py()  # only bad rows go through Python
            bad[int(rows_ok[k])] = (
                fields[j],
                value,
                _CODE_REASON[code],
                _expected_text(code, fields[j], empty),
            )
    quarantine = [_q("outfits", fn, r + first_line, lines[r], *bad[r]) for r in sorted(bad)]
    kept = values[keep_ok]
    col = {name: kept[:, j] for j, name in enumerate(fields)}
    top2 = col.get("top2", np.full(len(kept), -1, dtype=np.int64))
    cols = {
        "row": rows_ok[keep_ok].astype(np.int32),
        "user": col["user"].astype(np.int32),
        "top": col["top"].astype(np.int32),
        "top2": top2.astype(np.int32),
        "bottom": col["bottom"].astype(np.int32),
        "shoe": col["shoe"].astype(np.int32),
        "n_items": (3 + (top2 >= 0)).astype(np.int8),
    }
    return cols, quarantine, n


_CODE_REASON = {
    1: NOT_AN_INTEGER,
    2: NEGATIVE_USER,
    3: MISSING_REQUIRED_ITEM,
    4: NEGATIVE_ITEM_ID,
    5: ITEM_OUT_OF_RANGE,
    6: ITEM_WITHOUT_IMAGE,
}
_INT32_MAX = np.iinfo(np.int32).max


def _field_codes(
    values: np.ndarray, is_int: np.ndarray, fields: tuple[str, ...], empty: dict[str, np.ndarray]
) -> np.ndarray:
    """(rows, fields) problem code per field, 0 when fine; a row's first code is its reason."""
    codes = np.zeros(values.shape, dtype=np.int8)
    for j, name in enumerate(fields):
        v = values[:, j]
        c = np.zeros(len(v), dtype=np.int8)
        if name == "user":
            c[v < 0] = 2
            c[v > _INT32_MAX] = 1  # ids are int32 everywhere downstream
        else:
            no_image = empty["top" if name == "top2" else name]
            n_list = len(no_image)
            in_range = (v >= 0) & (v < n_list)
            if n_list:
                c[in_range & no_image[np.clip(v, 0, n_list - 1)]] = 6
            c[v >= n_list] = 5
            c[v < -1] = 4
            if name != "top2":  # only the second top is optional
                c[v == -1] = 3
        c[~is_int[:, j]] = 1
        codes[:, j] = c
    return codes


def _expected_text(code: int, name: str, empty: dict[str, np.ndarray]) -> str:
    if code == 1:
        return "an integer (ids are int32)"
    if code == 2:
        return "a user id >= 0"
    cat = "top" if name == "top2" else name
    if code == 6:
        return f"an id whose line in image_list_{cat} names an image"
    optional = " or -1 (no second top)" if name == "top2" else ""
    return f"an item id in [0, {len(empty[cat])}) of image_list_{cat}{optional}"


def _q(
    table: str,
    source: str,
    line_number: int,
    line: str,
    fld: str,
    value: str,
    reason: str,
    expected: str,
) -> dict:
    return {
        "table": table,
        "source": source,
        "line_number": line_number,
        "line": line,
        "field": fld,
        "value": value,
        "reason": reason,
        "expected": expected,
    }


def _const_str(value: str, n: int) -> pa.Array:
    """A string column of one repeated value, built in C++ rather than from a Python list."""
    indices = pa.array(np.zeros(n, dtype=np.int32))
    return pa.DictionaryArray.from_arrays(indices, pa.array([value])).cast(pa.string())


def _outfits_part(cols: dict[str, np.ndarray], set_name: str, split: str, kind: str) -> pa.Table:
    n = len(cols["row"])
    consts = {"set_name": set_name, "split": split, "kind": kind}
    arrays = [
        _const_str(consts[f.name], n) if f.name in consts else pa.array(cols[f.name], f.type)
        for f in OUTFIT_SCHEMA
    ]
    return pa.Table.from_arrays(arrays, schema=OUTFIT_SCHEMA)


# --------------------------------------------------------------------------------------------
# Reconciliation
# --------------------------------------------------------------------------------------------
def reconcile(tables: PolyvoreTables) -> dict[str, tuple[int, int, int]]:
    """source -> (rows read, kept, quarantined); read == kept + quarantined for every file."""
    kept = tables.kept_per_source()
    q_sources = tables.quarantine.column("source").to_pylist()
    quarantined: dict[str, int] = {}
    for s in q_sources:
        quarantined[s] = quarantined.get(s, 0) + 1
    return {
        src: (n, kept.get(src, 0), quarantined.get(src, 0))
        for src, n in sorted(tables.rows_read.items())
    }


def _check_reconciles(tables: PolyvoreTables) -> None:
    for src, (n, k, q) in reconcile(tables).items():
        if n != k + q:  # a reader bug, never a data problem: fail loudly
            raise AssertionError(f"{src}: read {n} rows but kept {k} + quarantined {q}")
