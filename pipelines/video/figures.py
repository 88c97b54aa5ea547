"""Pictures and tables of preferred videos, for people: a sheet of frame strips and the frame-order table.

`video_sheet` draws one row per unit of one model's `videos/` rows: every Nth frame of its lossless WebP
(the frames exactly as scored), titled with the unit's name and its scores as synthesized, reversed and
shuffled. `order_rows` / `order_markdown` summarize the order analysis of one model: on labelled real clips
(`video-order/` tables: accuracy and true-class score as given, reversed and shuffled) and on its preferred
videos (`videos/` rows: the unit's score as synthesized, reversed and shuffled).
`python -m pipelines.video.figures OUT MODEL DEST [NAMES]` draws the sheet of MODEL under OUT.
"""

from __future__ import annotations

import io
import sys
from typing import Sequence

import pandas as pd
from PIL import Image

from ..sheet import contact_sheet
from ..storage import Store
from .media import strip_indices, webp_frames

__all__ = ["video_sheet", "order_rows", "order_markdown"]


def _videos(store: Store) -> pd.DataFrame:
    from ..sink import read_dataset

    df = read_dataset(store, "videos").to_pandas()
    for c in ("model", "snapshot", "layer"):
        df[c] = df[c].astype(str)
    return df


def video_sheet(store: Store, model: str, names: Sequence[str] = (), count: int = 8, tile: int = 64) -> Image.Image:
    """Frame strips of every preferred video of `model` (seed 0 first), one row per unit; `names[unit]`
    titles rows (class names)."""
    df = _videos(store)
    df = df[df["model"] == model].sort_values(["layer", "unit", "seed"])
    images, labels, titles = [], [], []
    for r in df.itertuples():
        frames = webp_frames(store.read_bytes(r.lossless), r.fps)
        picked = strip_indices(len(frames), count)
        name = names[r.unit] if r.layer == df["layer"].iloc[-1] and r.unit < len(names) else f"{r.layer}:{r.unit}"
        titles.append((len(images) // count, f"{name} (seed {r.seed}): score {r.activation_final:.1f} as "
                       f"synthesized, {r.score_reversed:.1f} reversed, {r.score_shuffled_mean:.1f} shuffled"))
        for i in picked:
            images.append(Image.fromarray(frames[i]).resize((tile, tile), Image.NEAREST))
            labels.append(f"frame {i}")
        pad = (-len(picked)) % count
        images += [Image.new("RGB", (8, 8), "white")] * pad
        labels += [""] * pad
    return contact_sheet(images, labels, columns=count, tile=tile, rows_titles=titles)


def order_rows(store: Store, model: str, label_names: Sequence[str], order_table: str | None) -> dict:
    """One model's numbers: real clips (when `order_table`, a `video-order/` file, is given) and preferred
    videos of its output units."""
    out: dict = {"model": model}
    if order_table:
        t = pd.read_parquet(io.BytesIO(store.read_bytes(order_table)))
        index = {n: i for i, n in enumerate(label_names)}
        t = t[t["label"].map(index).eq(t["unit"])]  # each clip's row for its true class
        truth = t["label"].map(index)
        out.update(clips=len(t), acc=float((t["predicted"] == truth).mean()),
                   acc_reversed=float((t["predicted_reversed"] == truth).mean()),
                   acc_shuffled=float(pd.Series([sum(int(k) == y for k in ks) / max(len(ks), 1)
                                                 for ks, y in zip(t["predicted_shuffled"], truth)]).mean()),
                   true=float(t["score"].mean()), true_reversed=float(t["score_reversed"].mean()),
                   true_shuffled=float(t["score_shuffled_mean"].mean()))
    df = _videos(store)
    df = df[df["model"] == model]
    out.update(videos=len(df), pref=float(df["activation_final"].mean()),
               pref_reversed=float(df["score_reversed"].mean()),
               pref_shuffled=float(df["score_shuffled_mean"].mean()))
    return out


def order_markdown(rows: Sequence[dict]) -> str:
    """The README's frame-order table from `order_rows` of each model."""
    lines = ["| model | frames | real clips: accuracy (given / reversed / shuffled) | true-class score (given / "
             "reversed / shuffled) | preferred videos: unit score (as synthesized / reversed / shuffled) |",
             "|---|---|---|---|---|"]
    for r in rows:
        real = (f"{r['acc']:.0%} / {r['acc_reversed']:.0%} / {r['acc_shuffled']:.0%} ({r['clips']} clips)",
                f"{r['true']:.2f} / {r['true_reversed']:.2f} / {r['true_shuffled']:.2f}") if "acc" in r else ("", "")
        lines.append(f"| `{r['model']}` | {r.get('frames', '')} | {real[0]} | {real[1]} | {r['pref']:.2f} / "
                     f"{r['pref_reversed']:.2f} / {r['pref_shuffled']:.2f} ({r['videos']} videos) |")
    return "\n".join(lines)


if __name__ == "__main__":
    out, model, dest = sys.argv[1:4]
    video_sheet(Store(out), model, sys.argv[4].split(",") if len(sys.argv) > 4 else ()).save(dest)
    print(dest)
