"""VLM4D's official accuracy table from VLM4D's own judged output files (what its ``acc_final_statistics.py`` gives).

    python -m evaluation.vlm4d.official_table REAL_FOLDER SYNTHETIC_FOLDER [--csv table.csv]

VLM4D's ``acc_evaluation.py`` writes one JSON file per model into a real and a synthetic folder
(``processed_outputs/.../real_mc_cot/<model>.json``), each a list of judged questions with at least ``id``
(``"validation_<n>"``), ``correct`` (true / false, or 1 / 0) and ``ground_truth_answer``. For every file name
present in both folders this prints one row, as ``acc_final_statistics.py`` computes it: real questions split
by id (exo-centric up to 922, ego-centric above), synthetic ones by answer (false-premise when it is ``"no"`` or
starts with ``"no "``), each accuracy in percent over its questions rounded to two decimals, 0 for an empty
group, and the overall accuracy over all real and synthetic questions. Rows are sorted by file name (VLM4D's
follow the folder listing). Scoring this repository's predictions is ``run_eval --benchmark vlm4d``
(:func:`evaluation.dynamic_scoring.score_vlm4d`), whose groups are the same splits.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from evaluation.scoring import format_table
from utils.data.image_io import read_json
from utils.data.vlm4d import LAST_EXO_ID, id_number, is_false_premise

COLUMNS = (
    "Real Ego-centric Accuracy (%)",
    "Real Exo-centric Accuracy (%)",
    "Real Overall Accuracy (%)",
    "Synthetic Directional Accuracy (%)",
    "Synthetic FP Accuracy (%)",
    "Synthetic Overall Accuracy (%)",
    "Overall Accuracy (%)",
)
"""The official table's columns, in its order (after ``Model (JSON File)``)."""


def read_judged(path: Path, keys: tuple[str, ...]) -> list[dict]:
    """A judged file's questions, each checked to have ``keys`` and a true / false (or 1 / 0) ``correct``."""
    items = read_json(path)
    if not isinstance(items, list):
        raise ValueError(f"{path}: expected a JSON list of judged questions")
    for position, item in enumerate(items):
        if not isinstance(item, dict) or not set(keys) <= set(item):
            raise ValueError(f"{path}, item {position}: expected keys {list(keys)}, got {str(item)[:120]!r}")
        if item["correct"] not in (True, False, 0, 1):
            raise ValueError(f"{path}, item {position}: 'correct' must be true/false or 1/0, got {item['correct']!r}")
    return items


def percent(correct: int, total: int) -> float:
    """``100 * correct / total`` rounded to two decimals, 0 when ``total`` is 0 (as VLM4D's script does)."""
    return round(100 * correct / total, 2) if total else 0.0


def official_row(real: list[dict], synthetic: list[dict], where: str = "") -> dict[str, float]:
    """One model's row of :data:`COLUMNS` from its judged real and synthetic questions."""
    exo = [int(x["correct"]) for x in real if id_number(str(x["id"]), where) <= LAST_EXO_ID]
    ego = [int(x["correct"]) for x in real if id_number(str(x["id"]), where) > LAST_EXO_ID]
    fp = [int(x["correct"]) for x in synthetic if is_false_premise(x["ground_truth_answer"])]
    directional = [int(x["correct"]) for x in synthetic if not is_false_premise(x["ground_truth_answer"])]
    groups = (ego, exo, ego + exo, directional, fp, directional + fp, ego + exo + directional + fp)
    return {column: percent(sum(group), len(group)) for column, group in zip(COLUMNS, groups)}


def official_table(real_folder: str | Path, synthetic_folder: str | Path) -> dict[str, dict[str, float]]:
    """``{file name: row}`` for every ``.json`` file in both folders, sorted by name."""
    real_folder, synthetic_folder = Path(real_folder), Path(synthetic_folder)
    for folder in (real_folder, synthetic_folder):
        if not folder.is_dir():
            raise FileNotFoundError(f"missing folder of judged outputs {folder}")
    names = sorted({p.name for p in real_folder.glob("*.json")} & {p.name for p in synthetic_folder.glob("*.json")})
    if not names:
        raise ValueError(f"no .json file is in both {real_folder} and {synthetic_folder}")
    return {
        name: official_row(
            read_judged(real_folder / name, ("id", "correct")),
            read_judged(synthetic_folder / name, ("id", "correct", "ground_truth_answer")),
            str(real_folder / name),
        )
        for name in names
    }


def write_csv(table: dict[str, dict[str, float]], path: Path) -> None:
    """The table as VLM4D's CSV: ``Model (JSON File)`` then :data:`COLUMNS`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["Model (JSON File)", *COLUMNS])
        writer.writerows([name, *(row[column] for column in COLUMNS)] for name, row in table.items())


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("real_folder", type=Path, help="VLM4D's judged real_mc outputs (one JSON per model)")
    parser.add_argument("synthetic_folder", type=Path, help="VLM4D's judged synthetic_mc outputs")
    parser.add_argument("--csv", type=Path, help="also write the table as CSV here")
    args = parser.parse_args(argv)
    table = official_table(args.real_folder, args.synthetic_folder)
    print(format_table(table, list(COLUMNS), unscaled=COLUMNS))
    if args.csv:
        write_csv(table, args.csv)
        print(f"written to {args.csv}")
    return table


if __name__ == "__main__":
    main()
