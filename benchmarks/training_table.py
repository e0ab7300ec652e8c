"""The README's training table: every CPU config trained, then evaluated with its
untrained start and the untrained cat preset, on the test split and the unseen pair.

Each config in `config/train/nordland_lite0_*_cpu.yaml` is trained with `seqvpr train`
(frozen EfficientNet-Lite0 features of `../shared/data/nordland64`, frames 1-1200;
validation 1301-1600) and scored with `seqvpr eval --data CONFIG --split S` on
`test` (frames 2001-2400, summer map, winter queries) and `unseen` (frames 1601-2000,
winter map, summer queries), L = 10, tolerance 1, Recall@1 current / seq2seq. Runs and
reports go to `runs/`; `--reuse` keeps what is already there. Without it every
config is trained anew, so `runs/nordland_lite0_*` must not exist yet (`seqvpr train`
never replaces a run).

    python benchmarks/training_table.py [--reuse]
"""

from __future__ import annotations

import json
import subprocess
import sys

from _common import ROOT, parser

CONFIGS = {
    "cat": "frame head (identity start) + cat, the default",
    "fc": "L x D -> 512 FC",
    "seqvlad": "SeqVLAD, K=16",
    "seqgem": "FC head 256 + SeqGeM",
}
PRESET = "seqvpr_core/configs/nordland_lite0_cat.yaml"
SPLITS = ("test", "unseen")


def seqvpr(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "seqvpr_core.cli.main", *args], cwd=ROOT,
                   check=True, stdout=subprocess.DEVNULL)


def recall(config: str, split: str, model: str, report: str, reuse: bool) -> str:
    path = ROOT / "runs" / "eval" / f"{report}.json"
    if not (reuse and path.is_file()):
        seqvpr("eval", "--data", config, "--split", split, "--model", model, "--window", "10",
               "--tolerance", "1", "--no-single-frame", "--examples", "0", "--json", str(path))
    r = json.loads(path.read_text())["recall"]
    return f"{r['current']['1']:.3f} / {r['seq2seq']['1']:.3f}"


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--reuse", action="store_true", help="keep existing runs and reports")
    args = p.parse_args()
    rows = []
    for name, label in CONFIGS.items():
        config = f"config/train/nordland_lite0_{name}_cpu.yaml"
        run = ROOT / "runs" / f"nordland_lite0_{name}"
        if not (args.reuse and (run / "best.pt").is_file()):
            seqvpr("train", "--config", config)
        history = json.loads((run / "history.json").read_text())
        best = max(history, key=lambda h: (h["val_recall"]["1"], -h["epoch"]))["epoch"]
        cells = [recall(config, s, str(run / f"{m}.pt"), f"{name}_{m}_{s}", args.reuse)
                 for s in SPLITS for m in ("init", "best")]
        rows.append(f"| `{name}` ({label}) | {best} | " + " | ".join(cells) + " |")
    preset = [recall("config/train/nordland_lite0_cat_cpu.yaml", s, PRESET, f"preset_{s}",
                     args.reuse) for s in SPLITS]
    print("| config | best epoch | test: untrained | test: trained | unseen: untrained | "
          "unseen: trained |")
    print("|---|---|---|---|---|---|")
    print(f"| untrained `cat` preset ({PRESET}) | - | {preset[0]} | | {preset[1]} | |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
