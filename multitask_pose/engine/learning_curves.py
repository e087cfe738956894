"""Learning curves of training runs: losses and COCO AP against iteration, read from the
``metrics.json`` detectron2's ``JSONWriter`` writes in each run's OUTPUT_DIR (one json object per
logged iteration; the evaluation hook logs ``bbox/AP``, ``keypoints/AP``, ... at its iterations)
or from the TensorBoard event files its ``TensorboardXWriter`` writes beside it (the same scalars
by tag and step; ``tensorboard --logdir OUTPUT_DIR`` shows them live), plus the run's final
``results_<dataset>.json`` (written by ``train_net_main``) when no evaluation was logged at the
end. Drawn by ``tools/plot_curves.py`` and by ``make demo``.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from ..shared.atomic_io import save_figure_atomic

__all__ = [
    "SOURCES",
    "LearningCurves",
    "plot_learning_curves",
    "read_learning_curves",
    "curves_summary",
]

AP_TASKS = ("keypoints", "bbox", "segm")


@dataclass
class LearningCurves:
    name: str
    # series name -> (iterations, values); losses as logged, AP in [0, 1] (detectron2 logs %)
    losses: Dict[str, Tuple[List[int], List[float]]] = field(default_factory=dict)
    ap: Dict[str, Tuple[List[int], List[float]]] = field(default_factory=dict)


SOURCES = ("auto", "json", "tensorboard")


def _json_records(path: Path) -> Dict[int, Dict]:
    records: Dict[int, Dict] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}, line {n}: not json ({e})") from e
        if isinstance(rec, dict) and "iteration" in rec:
            records.setdefault(int(rec["iteration"]), {}).update(rec)
    return records


def _event_records(run_dir: Path) -> Dict[int, Dict]:
    """Scalars of the run's TensorBoard event files by step (files in name order, i.e. by
    creation time: a resumed run's later values win), read with TensorBoard's own reader."""
    try:
        from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    except ImportError as e:
        raise ImportError(
            "reading TensorBoard events needs the tensorboard package (pip install tensorboard)"
        ) from e
    from tensorboard.util import tensor_util

    records: Dict[int, Dict] = {}
    for path in sorted(run_dir.glob("events.out.tfevents.*")):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.HasField("tensor"):
                    number = tensor_util.make_ndarray(value.tensor)
                elif value.HasField("simple_value"):
                    number = value.simple_value
                else:
                    continue
                records.setdefault(int(event.step), {})[value.tag] = float(number)
    return records


def read_learning_curves(run_dir, name: str = "", source: str = "auto") -> LearningCurves:
    """The curves of one run (its OUTPUT_DIR) from ``source``: "json" (metrics.json),
    "tensorboard" (its event files) or "auto" (metrics.json if there, else the events). A
    resumed run logs some iterations twice: the last record of an iteration wins. Raises
    FileNotFoundError / ValueError naming the file when there is no such file or it holds no
    loss."""
    run_dir = Path(run_dir)
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    path = run_dir / "metrics.json"
    events = sorted(run_dir.glob("events.out.tfevents.*"))
    if source == "tensorboard" or (source == "auto" and not path.is_file() and events):
        if not events:
            raise FileNotFoundError(
                f"no TensorBoard event file (events.out.tfevents.*) in {run_dir}"
            )
        path = events[-1]
        records = _event_records(run_dir)
    elif not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: not a training OUTPUT_DIR, or no iteration logged"
        )
    else:
        records = _json_records(path)
    curves = LearningCurves(name or run_dir.name)
    for it in sorted(records):
        for key, value in records[it].items():
            if not isinstance(value, (int, float)):
                continue
            if key == "total_loss" or key.startswith("loss_"):
                series = curves.losses.setdefault(key, ([], []))
            elif key.split("/")[0] in AP_TASKS and key.split("/")[-1] in ("AP", "AP50", "AP75"):
                series = curves.ap.setdefault(key, ([], []))
                value = value / 100
            else:
                continue
            series[0].append(it + 1)  # iterations done
            series[1].append(float(value))
    if not curves.losses:
        raise ValueError(f"{path} has no loss (total_loss, loss_*) in any record")
    last = max(its[-1] for its, _ in curves.losses.values())  # the last training iteration
    # The evaluation after training is logged one past the last iteration (storage.iter).
    for its, _ in curves.ap.values():
        its[:] = [min(it, last) for it in its]
    for results in sorted(run_dir.glob("results_*.json")):
        final = json.loads(results.read_text())
        for task in AP_TASKS:
            for metric in ("AP", "AP50", "AP75"):
                key = f"{task}/{metric}"
                if task in final and metric in final[task]:
                    series = curves.ap.setdefault(key, ([], []))
                    if not series[0] or series[0][-1] < last:
                        series[0].append(last)
                        series[1].append(final[task][metric] / 100)
    return curves


def plot_learning_curves(runs: Sequence[LearningCurves], path, ap_metric: str = "AP") -> Path:
    """Two panels for one or several runs: every loss (total_loss thick) against iteration on a
    log scale, and the box/mask/keypoint ``ap_metric`` against iteration. Writes a PNG."""
    from matplotlib.figure import Figure  # no pyplot: no display, no global state

    fig = Figure(figsize=(12, 4.5), dpi=100)
    ax_loss, ax_ap = fig.subplots(1, 2)
    colours = [f"C{i}" for i in range(10)]
    styles = {"keypoints": "-", "bbox": "--", "segm": ":"}
    for i, run in enumerate(runs):
        c = colours[i % len(colours)]
        for key, (its, values) in sorted(run.losses.items()):
            total = key == "total_loss"
            label = f"{run.name} {key}" if total or len(runs) == 1 else None
            ax_loss.plot(its, values, color=c, lw=2.0 if total else 0.8,
                         alpha=1.0 if total else 0.5, label=label)  # fmt: skip
        for key, (its, values) in sorted(run.ap.items()):
            task, metric = key.split("/")
            if metric == ap_metric:
                ax_ap.plot(its, values, styles.get(task, "-"), color=c, marker="o", ms=3,
                           label=f"{run.name} {task}")  # fmt: skip
    ax_loss.set(xlabel="iteration", ylabel="loss", yscale="log", title="training losses")
    ax_ap.set(xlabel="iteration", ylabel=f"COCO {ap_metric}", title=f"{ap_metric} during training")
    ax_ap.set_ylim(0, 1)
    for ax in (ax_loss, ax_ap):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    save_figure_atomic(fig, path)
    return path


def curves_summary(runs: Sequence[LearningCurves], path) -> str:
    parts = []
    for run in runs:
        its, total = run.losses.get("total_loss", next(iter(run.losses.values())))
        part = f"{run.name}: total_loss {total[0]:.3g} -> {total[-1]:.3g} over {its[-1]} it"
        for task in AP_TASKS:
            series = run.ap.get(f"{task}/AP")
            if series:
                part += f", {task} AP {series[1][-1]:.3f} (it {series[0][-1]})"
        parts.append(part)
    return "plot_curves: " + "; ".join(parts) + f"; wrote {path}"
