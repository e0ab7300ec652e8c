"""Atomic writes: a failure half-way leaves the previous file and no debris."""

from __future__ import annotations

import pytest

from seqvpr_core.atomic import atomic_path, write_json


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "report.json"
    write_json(target, {"recall": 1})
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text('{"rec')  # half written when the job dies
        raise RuntimeError("killed")
    assert target.read_text() == '{\n  "recall": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_temporary_keeps_the_suffix_for_format_sniffing_writers(tmp_path):
    with atomic_path(tmp_path / "plot.png") as tmp:
        assert tmp.suffix == ".png" and tmp.parent == tmp_path
        tmp.write_bytes(b"x")
    assert (tmp_path / "plot.png").read_bytes() == b"x"


@pytest.mark.parametrize("name", ["curve.pdf", "curve.PDF", "curve.PNG"])
def test_a_plot_seqvpr_wrote_is_replaced_whatever_the_case_of_its_suffix(tmp_path, name):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from seqvpr_core.atomic import save_figure
    from seqvpr_core.outputs import PLOT, OutputError, claim

    def plot() -> None:  # enough points that a PDF's metadata lies past its first 8 KB
        fig, ax = plt.subplots()
        ax.plot(np.random.default_rng(0).random(20_000))
        save_figure(fig, tmp_path / name)

    plot()
    plot()  # the rerun replaces its own plot
    assert claim(tmp_path / name, PLOT) == tmp_path / name
    (tmp_path / "theirs.PDF").write_bytes(b"%PDF-1.4 " + b"x" * 100_000)
    with pytest.raises(OutputError, match="not a seqvpr plot"):
        claim(tmp_path / "theirs.PDF", PLOT)
