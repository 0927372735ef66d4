"""The bad-input corpus: small broken files and CLI calls, each with its expected outcome.

Every case is one ``rareflow train`` or ``rareflow score`` call on a small generated file.
It must end with a one-line ``error: ...`` naming the problem and a documented exit status
(2 bad input, 6 registry; see schemas/errors.py), or, for the few inputs rareflow is meant to
handle (an unseen category, a UTF-8 byte-order mark), succeed.

Write the files to a folder to try them by hand::

    python tests/badinput/corpus.py /tmp/badinput
"""

from __future__ import annotations

import gzip
import io
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

LABEL = "is_fraud"
TRAIN_FLAGS = ["--label", LABEL, "--positive", "1", "--model", "logreg", "--sampler", "none",
               "--class-weight", "none", "--folds", "3", "--seed", "0"]


@dataclass(frozen=True)
class Case:
    """One bad input: how to write it, how to call rareflow, what must come out.

    ``args`` may hold ``{data}``, ``{out}``, ``{registry}``, ``{name}`` and ``{dir}``
    placeholders; ``write`` gets the base frame and the target path and writes the file (it
    may write nothing, for a path that must not exist).
    """

    id: str
    command: str  # "train" or "score"
    file: str
    write: Callable[[pd.DataFrame, Path], None]
    exit_code: int
    message: str  # regex the final stderr line must match (case-insensitive)
    args: tuple[str, ...] = ()
    tags: tuple[str, ...] = field(default=())


def base_frame(n_rows: int = 400, seed: int = 11) -> pd.DataFrame:
    """A small demo table (about 20 positives) every broken file is derived from."""
    from tasks.data.demo_tables import make_demo_data

    return make_demo_data(n_rows, positive_rate=0.05, seed=seed)


# -- writers ---------------------------------------------------------------------------------
def _csv(df: pd.DataFrame, path: Path, **kwargs) -> None:
    df.to_csv(path, index=False, **kwargs)


def _bytes(data: bytes) -> Callable[[pd.DataFrame, Path], None]:
    return lambda df, path: path.write_bytes(data)


def _with(fn: Callable[[pd.DataFrame], pd.DataFrame]) -> Callable[[pd.DataFrame, Path], None]:
    return lambda df, path: _csv(fn(df.copy()), path)


def _nothing(df: pd.DataFrame, path: Path) -> None:
    return None


def _directory(df: pd.DataFrame, path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "part-0.csv").write_text("a,b\n1,2\n", encoding="utf-8")


def _header_only(df: pd.DataFrame, path: Path) -> None:
    path.write_text(",".join(df.columns) + "\n", encoding="utf-8")


def _header_only_parquet(df: pd.DataFrame, path: Path) -> None:
    df.iloc[:0].to_parquet(path, index=False)


def _garbage(df: pd.DataFrame, path: Path) -> None:
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())


def _nul_bytes(df: pd.DataFrame, path: Path) -> None:
    path.write_bytes(b"\x00\x01\x02\x03" * 512)


def _truncated_gzip(df: pd.DataFrame, path: Path) -> None:
    data = gzip.compress(df.to_csv(index=False).encode())
    path.write_bytes(data[: len(data) // 2])


def _gzip_of_garbage(df: pd.DataFrame, path: Path) -> None:
    raw = np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw))


def _corrupt_parquet(df: pd.DataFrame, path: Path) -> None:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    data = bytearray(buf.getvalue())
    mid = len(data) // 2
    data[mid: mid + 64] = b"\xff" * 64  # a damaged middle, intact PAR1 magic at both ends
    path.write_bytes(bytes(data[:-200]) + bytes(data[-8:]))


def _csv_named_parquet(df: pd.DataFrame, path: Path) -> None:
    _csv(df, path)


def _ragged(df: pd.DataFrame, path: Path) -> None:
    lines = df.to_csv(index=False).splitlines()
    lines[5] += ",extra,fields"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _duplicate_columns(df: pd.DataFrame, path: Path) -> None:
    lines = df.to_csv(index=False).splitlines()
    lines[0] = lines[0].replace("hour", "amount", 1)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _latin1(df: pd.DataFrame, path: Path) -> None:
    df = df.copy()
    df["merchant_category"] = df["merchant_category"].replace("restaurants", "café")
    df.to_csv(path, index=False, encoding="latin-1")


def _bom_batch(df: pd.DataFrame, path: Path) -> None:
    df.drop(columns=[LABEL]).to_csv(path, index=False, encoding="utf-8-sig")


def _nested_parquet(df: pd.DataFrame, path: Path) -> None:
    df.assign(tags=[[i % 3, 1] for i in range(len(df))]).to_parquet(path, index=False)


def _dates_as_text(df: pd.DataFrame) -> pd.DataFrame:
    days = pd.date_range("2024-01-01", periods=len(df), freq="D").strftime("%Y-%m-%d")
    return df.assign(seen_on=days)


def _laughs(df: pd.DataFrame, path: Path) -> None:
    _csv(df, path)
    lines = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 9) + "]"
              for i in range(8)]
    (path.parent / "laughs.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _set(column: str, value) -> Callable[[pd.DataFrame], pd.DataFrame]:
    return lambda df: df.assign(**{column: value})


def _first_rows(column: str, value, n: int = 1) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def fn(df: pd.DataFrame) -> pd.DataFrame:
        values = df[column].astype(object)
        values.iloc[:n] = value
        return df.assign(**{column: values})

    return fn


def _few_positives(df: pd.DataFrame) -> pd.DataFrame:
    keep = df[LABEL].eq(0) | (df[LABEL].eq(1) & (df[LABEL].cumsum() <= 3))
    return df[keep]


def _three_classes(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(**{LABEL: np.arange(len(df)) % 3})


def _whitespace_labels(df: pd.DataFrame) -> pd.DataFrame:
    text = np.where(df[LABEL].eq(1), "fraud", "ok").astype(object)
    text[np.flatnonzero(df[LABEL].eq(1))[::2]] = "fraud "
    return df.assign(**{LABEL: text})


def _batch(fn: Callable[[pd.DataFrame], pd.DataFrame] | None = None):
    """A scoring batch (label dropped), optionally broken by ``fn``."""

    def write(df: pd.DataFrame, path: Path) -> None:
        batch = df.drop(columns=[LABEL]).head(120)
        batch = fn(batch.copy()) if fn else batch
        if path.name.endswith(".parquet"):
            batch.to_parquet(path, index=False)
        else:
            batch.to_csv(path, index=False)

    return write


def _train(id, file, write, message, *extra, exit_code=2, tags=()) -> Case:
    return Case(id, "train", file, write, exit_code, message,
                ("--data", "{data}", *TRAIN_FLAGS, "--registry", "{registry}", "--name",
                 "{name}", *extra), tags)


def _score(id, file, write, message, *extra, exit_code=2, tags=()) -> Case:
    args = ["--data", "{data}", "--out", "{out}", "--registry", "{registry}", "--name", "{name}"]
    for flag, value in zip(extra[::2], extra[1::2], strict=True):
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    return Case(id, "score", file, write, exit_code, message, tuple(args), tags)


CASES: list[Case] = [
    # -- unreadable files -------------------------------------------------------------------
    _train("empty-file", "empty.csv", _bytes(b""), r"is empty \(0 bytes\)"),
    _train("header-only", "header_only.csv", _header_only, r"header but no data rows",
           tags=("subprocess",)),
    _train("header-only-parquet", "header_only.parquet", _header_only_parquet,
           r"header but no data rows"),
    _train("binary-garbage", "garbage.csv", _garbage, r"not UTF-8 text"),
    _train("nul-bytes-no-suffix", "garbage_nul.dat", _nul_bytes, r"looks binary"),
    _train("truncated-gzip", "truncated.csv.gz", _truncated_gzip,
           r"(truncated|corrupt|gzip)"),
    _train("gzip-of-garbage", "garbage.csv.gz", _gzip_of_garbage, r"not UTF-8 text"),
    _train("corrupted-parquet", "corrupt.parquet", _corrupt_parquet,
           r"not a readable Parquet file"),
    _train("csv-named-parquet", "really_csv.parquet", _csv_named_parquet,
           r"not a readable Parquet file"),
    _train("ragged-csv", "ragged.csv", _ragged, r"not a valid CSV"),
    _train("duplicate-columns", "duplicate_columns.csv", _duplicate_columns,
           r"duplicate column names: \['amount'\]"),
    _train("non-utf8", "latin1.csv", _latin1, r"not UTF-8 text"),
    _train("missing-path", "does_not_exist.csv", _nothing, r"does not exist"),
    # a folder is a data source of partitions (issue 14): one without the label is named
    _train("directory", "a_folder.csv", _directory, r"label column 'is_fraud' is missing"),
    # -- labels -----------------------------------------------------------------------------
    _train("missing-label", "no_label.csv", _with(lambda df: df.drop(columns=[LABEL])),
           r"label column 'is_fraud' is missing"),
    _train("one-class", "one_class.csv", _with(_set(LABEL, 0)), r"one class only"),
    _train("three-classes", "three_classes.csv", _with(_three_classes),
           r"3 classes.*exactly two"),
    _train("label-all-null", "label_null.csv", _with(_set(LABEL, np.nan)),
           r"label column is all null"),
    _train("label-some-null", "label_some_null.csv", _with(_first_rows(LABEL, np.nan, 5)),
           r"label has 5 missing values"),
    _train("too-few-positives", "few_positives.csv", _with(_few_positives),
           r"3 positive rows.*need at least"),
    _train("positive-absent", "demo.csv", _with(lambda df: df), r"positive value 'yes' is not",
           "--positive", "yes"),
    _train("labels-differ-by-whitespace", "whitespace_labels.csv", _with(_whitespace_labels),
           r"differ only by whitespace", "--positive", "fraud"),
    _train("only-label-column", "only_label.csv", _with(lambda df: df[[LABEL]]),
           r"no feature columns"),
    # -- features ---------------------------------------------------------------------------
    _train("all-null-feature", "all_null_feature.csv", _with(_set("amount", np.nan)),
           r"'amount'.*(all null|no values)"),
    _train("infinite-values", "infinite.csv", _with(_first_rows("amount", np.inf, 3)),
           r"'amount'.*(finite|inf)"),
    _train("text-in-numeric", "text_in_numeric.csv",
           _with(_first_rows("amount", "twelve", 2)), r"'amount' holds numbers but 2"),
    # -- parameters -------------------------------------------------------------------------
    _train("name-escapes-registry", "demo.csv", _with(lambda df: df), r"model name must be",
           "--name", "../escaped"),
    _train("absolute-name", "demo.csv", _with(lambda df: df), r"model name must be",
           "--name", "/tmp/escaped"),
    _train("negative-cost", "demo.csv", _with(lambda df: df), r"fn_cost", "--fn-cost", "-1"),
    _train("unknown-model", "demo.csv", _with(lambda df: df), r"strategy\.model",
           "--model", "xgboost"),
    _train("sample-zero", "demo.csv", _with(lambda df: df), r"^error: invalid configuration: "
           r"sample: .*above 0 and at most 1", "--sample", "0"),
    _train("sample-above-one", "demo.csv", _with(lambda df: df), r"sample: .*above 0 and at "
           r"most 1", "--sample", "1.5"),
    _train("sample-too-few-negatives", "demo.csv", _with(lambda df: df), r"sample 0\.02 "
           r"\(rate 0\.02\) keeps \d+ of the \d+ negative rows .*raise sample", "--sample",
           "0.02"),
    # a window of rows counts the population's rows: the last 500, of which few negatives kept
    _train("sample-too-few-in-rows-window", "demo.csv", _with(lambda df: df), r"sample 0\.02 "
           r"\(rate 0\.02\) keeps \d+ of the \d{1,3} negative rows .*raise sample", "--sample",
           "0.02", "--window", "500rows"),
    _train("bad-config-yaml", "demo.csv", _with(lambda df: df), r"not valid YAML",
           "--config", "{dir}/broken.yaml"),
    _train("billion-laughs-config", "demo.csv", _laughs, r"laughs.yaml' expands to more "
           r"than 100,000 values", "--config", "{dir}/laughs.yaml"),
    _train("nested-parquet-column", "nested.parquet", _nested_parquet,
           r"column 'tags' holds ndarray values \(a nested Parquet column\)"),
    _train("dates-as-text", "dates_as_text.csv", _with(_dates_as_text),
           r"column 'seen_on' holds dates as text"),
    _train("beyond-float32", "beyond_float32.csv", _with(_first_rows("amount", 1e308, 2)),
           r"column 'amount' has 2 values beyond ±3.4e\+38"),
    # -- scoring ----------------------------------------------------------------------------
    _score("score-beyond-float32", "batch_huge.csv", _batch(_first_rows("amount", -1e308, 2)),
           r"column 'amount' has 2 values beyond ±3.4e\+38", tags=("subprocess",)),
    _score("score-nested-parquet", "batch_nested.parquet",
           _batch(lambda df: df.assign(amount=[[1.0]] * len(df))),
           r"column 'amount' holds ndarray values"),
    _score("score-booleans-for-a-category", "batch_bool_category.parquet",
           _batch(_set("channel", True)),
           r"column 'channel' holds true/false values but was trained on the categories"),
    _score("score-feature-missing-in-every-row", "batch_no_amount.csv",
           _batch(_set("amount", np.nan)), r"column 'amount' is missing in every row"),
    _score("score-missing-column", "batch_missing.csv",
           _batch(lambda df: df.drop(columns=["amount"])), r"column 'amount' is missing",
           tags=("subprocess",)),
    _score("score-wrong-type", "batch_wrong_type.csv",
           _batch(_set("amount", "lots")), r"'amount'.*wrong type"),
    _score("score-booleans-in-numeric", "batch_bool.csv", _batch(_set("amount", True)),
           r"'amount' was numeric in training but holds \d+ true/false values",
           tags=("subprocess",)),
    _score("score-true-false-text-in-numeric", "batch_bool_text.csv",
           _batch(_first_rows("amount", "False", 3)),
           r"'amount' was numeric in training but holds 3 true/false values"),
    _score("score-infinite", "batch_inf.csv", _batch(_first_rows("amount", np.inf, 2)),
           r"'amount'.*(finite|inf)"),
    _score("score-empty-batch", "batch_empty.csv", _header_only, r"no data rows"),
    _score("score-empty-parquet", "batch_empty.parquet", _header_only_parquet,
           r"no data rows"),
    _score("score-garbage", "batch_garbage.csv", _garbage, r"not UTF-8 text"),
    _score("score-missing-path", "nope.csv", _nothing, r"does not exist"),
    _score("score-unknown-version", "batch.csv", _batch(), r"no version 'v0099'",
           "--version", "v0099", exit_code=6),
    _score("score-version-escapes", "batch.csv", _batch(), r"version id must look like",
           "--version", "../../etc/passwd", exit_code=6),
    _score("score-name-escapes", "batch.csv", _batch(), r"model name must be",
           "--name", "../demo"),
    _score("score-no-champion", "batch.csv", _batch(), r"no champion yet",
           "--name", "nobody", exit_code=6),
    _score("score-out-is-directory", "batch.csv", _batch(), r"is a directory",
           "--out", "{dir}"),
    # -- inputs rareflow must handle --------------------------------------------------------
    _score("score-unseen-category", "batch_unseen.csv",
           _batch(_first_rows("merchant_category", "space_tourism", 7)), r"Scored 120 rows",
           exit_code=0, tags=("subprocess",)),
    _score("score-bom", "batch_bom.csv", _bom_batch, r"Scored 400 rows", exit_code=0),
    _score("score-extra-columns", "batch_extra.csv",
           _batch(_set("unexpected_column", "x")), r"Scored 120 rows", exit_code=0),
]


def write_case(case: Case, base: pd.DataFrame, folder: Path) -> Path:
    """Write one case's file into ``folder`` and return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / case.file
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
    case.write(base, path)
    (folder / "broken.yaml").write_text("costs: {fn_cost: 10\nlabel: [\n", encoding="utf-8")
    return path


def write_corpus(folder: Path) -> list[Path]:
    """Write every case's file into ``folder`` (cases sharing a file name share it)."""
    base = base_frame()
    return [write_case(case, base, folder / case.id) for case in CASES]


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "badinput-files")
    for written in write_corpus(target):
        print(written)
