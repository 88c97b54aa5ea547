"""Snapshot tracking in TensorBoard, read back with TensorBoard's own EventAccumulator, and the trainer-side
save helper: one image per tracked unit and seed per snapshot step, at that step, with the PNG's pixels; a
sweep that dies before its events are written and is started again duplicates no step; a save killed at any
point leaves no checkpoint the watcher takes as complete; without tensorboard, one line and no work."""

from __future__ import annotations

import io
import json
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from models.errors import UserInputError
from pipelines.cli import main
from pipelines.snapshots.checkpoints import Prefix, find_checkpoints
from pipelines.snapshots.completeness import Completeness
from pipelines.snapshots.trainer import checkpoint_name, save_checkpoint
from pipelines.storage import Store
from tests.selfloading_net import ONetLike

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")

SWEEP = ["snapshots", "--model", "tests.selfloading_net:ONetLike", "--input-size", "48", "--layers", "dense6_3",
         "--units", "0:2", "--seeds", "2", "--steps", "3", "--style", "yosinski", "--batch-size", "4"]
TAGS = [f"neuron-atlas/dense6_3/u{u}/s{s}" for u in (0, 1) for s in (0, 1)]


def train(ckpts, steps) -> None:
    for step in steps:
        save_checkpoint(ONetLike(weights_seed=step).state_dict(), str(ckpts), step,
                        metrics={"val_accuracy": torch.tensor(step / 1000), "loss": float("nan")})


def read_events(logdir):
    acc = event_accumulator.EventAccumulator(str(logdir / "neuron-atlas"),
                                             size_guidance={event_accumulator.IMAGES: 0,
                                                            event_accumulator.SCALARS: 0})
    acc.Reload()
    return acc


def tracking_rows(out) -> list[dict]:
    import pyarrow.parquet as pq

    (path,) = out.glob("tracking/*/*/steps.parquet")
    return pq.read_table(path).to_pylist()


def test_every_unit_has_one_image_per_snapshot_step_with_the_pngs_pixels(tmp_path, capsys):
    ckpts, out, logs = tmp_path / "ckpts", tmp_path / "out", tmp_path / "logs"
    train(ckpts, (100, 200, 300))
    assert main([*SWEEP, "--checkpoints", str(ckpts), "--out", str(out), "--tensorboard", str(logs)]) == 0
    acc = read_events(logs)
    tags = acc.Tags()
    assert set(TAGS) <= set(tags["images"])
    rows = {(r["unit"], r["seed"], r["step"]): r for r in tracking_rows(out)}
    for tag in TAGS:
        unit, seed = int(tag.split("/u")[1].split("/")[0]), int(tag.rsplit("/s", 1)[1])
        events = acc.Images(tag)
        assert [e.step for e in events] == [100, 200, 300]  # once per snapshot, at its training step
        for e in events:
            png = Image.open(io.BytesIO(e.encoded_image_string))
            saved = Image.open(out / rows[(unit, seed, e.step)]["image"])
            assert np.array_equal(np.asarray(png), np.asarray(saved)) and (e.width, e.height) == saved.size
        scalars = acc.Scalars(f"{tag}/activation")
        assert [s.step for s in scalars] == [100, 200, 300]
        assert [s.value for s in scalars] == pytest.approx([rows[(unit, seed, s)]["activation_final"]
                                                            for s in (100, 200, 300)], rel=1e-6)
    strips = acc.Images("neuron-atlas/dense6_3/u0/filmstrip")
    assert [e.step for e in strips] == [100, 200, 300]
    # the metrics sidecar reached the tracking table (a 0-d tensor as a number, NaN as null)
    assert json.loads(rows[(0, 0, 200)]["metrics"]) == {"loss": None, "val_accuracy": pytest.approx(0.2)}
    # a rerun writes nothing; a new checkpoint adds exactly its own step
    files = sorted(p.name for p in (logs / "neuron-atlas").iterdir())
    assert len(files) == 3 and all(".neuron-atlas.000000" in f for f in files)
    assert main([*SWEEP, "--checkpoints", str(ckpts), "--out", str(out), "--tensorboard", str(logs)]) == 0
    assert sorted(p.name for p in (logs / "neuron-atlas").iterdir()) == files
    train(ckpts, (400,))
    assert main([*SWEEP, "--checkpoints", str(ckpts), "--out", str(out), "--tensorboard", str(logs)]) == 0
    assert [e.step for e in read_events(logs).Images(TAGS[0])] == [100, 200, 300, 400]


def test_a_sweep_that_dies_before_its_events_are_written_duplicates_no_step(tmp_path, monkeypatch):
    from pipelines.snapshots import tensorboard

    ckpts, out, logs = tmp_path / "ckpts", tmp_path / "out", tmp_path / "logs"
    train(ckpts, (10, 20, 30))
    real_write, calls = tensorboard.TensorBoardLog._write, []

    def dies_after_one(self, label, rows, read):
        if calls:
            raise KeyboardInterrupt  # the watcher killed between two event files
        calls.append(label)
        real_write(self, label, rows, read)

    monkeypatch.setattr(tensorboard.TensorBoardLog, "_write", dies_after_one)
    assert main([*SWEEP, "--checkpoints", str(ckpts), "--out", str(out), "--tensorboard", str(logs)]) != 0
    assert len(list((logs / "neuron-atlas").iterdir())) == 1
    monkeypatch.setattr(tensorboard.TensorBoardLog, "_write", real_write)
    assert main([*SWEEP, "--checkpoints", str(ckpts), "--out", str(out), "--tensorboard", str(logs)]) == 0
    acc = read_events(logs)
    for tag in TAGS:
        assert [e.step for e in acc.Images(tag)] == [10, 20, 30]
    assert not [p for p in (logs / "neuron-atlas").iterdir() if "tfevents" not in p.name]  # no partial file left


def test_without_tensorboard_the_flag_is_one_line_and_nothing_runs(tmp_path, monkeypatch, capsys):
    for name in ("tensorboard", "tensorboard.compat", "tensorboard.compat.proto"):
        monkeypatch.setitem(sys.modules, name, None)
    train(tmp_path / "ckpts", (5,))
    code = main([*SWEEP, "--checkpoints", str(tmp_path / "ckpts"), "--out", str(tmp_path / "out"),
                 "--tensorboard", str(tmp_path / "logs")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "pip install 'neuron-atlas[tensorboard]'" in err[0]
    assert not (tmp_path / "out" / "units").exists() and not (tmp_path / "logs").exists()


def complete_steps(ckpts) -> list[int]:
    prefix = Prefix(str(ckpts))
    listing = prefix.list()
    found, _, _ = find_checkpoints(listing, prefix.uri, None)
    return sorted(c.step for c in Completeness(0.0).split(found, listing, now=1e9).complete)


def test_a_save_killed_at_any_point_leaves_no_checkpoint_the_watcher_takes(tmp_path, monkeypatch):
    ckpts = tmp_path / "ckpts"
    save_checkpoint({"w": torch.ones(2)}, str(ckpts), 100, metrics={"val_accuracy": 0.5})
    assert sorted(p.name for p in ckpts.iterdir()) == ["ckpt_000000100.json", "ckpt_000000100.pt",
                                                       "ckpt_000000100.pt.done"]
    assert complete_steps(ckpts) == [100]
    real = Store.write_bytes
    for dies_at in (".json", ".pt", ".done"):  # killed while writing the sidecar, the checkpoint, the marker
        step = {".json": 200, ".pt": 300, ".done": 400}[dies_at]

        def killed(self, rel, data, content_type=None, dies_at=dies_at):
            if rel.endswith(dies_at):
                if dies_at == ".pt":  # half of the checkpoint reached the disk under its temporary name
                    real(self, rel + ".tmp-killed", data[: len(data) // 2])
                raise KeyboardInterrupt
            return real(self, rel, data, content_type)

        monkeypatch.setattr(Store, "write_bytes", killed)
        with pytest.raises(KeyboardInterrupt):
            save_checkpoint({"w": torch.ones(2)}, str(ckpts), step, metrics={"val_accuracy": 0.6})
        monkeypatch.setattr(Store, "write_bytes", real)
        assert complete_steps(ckpts) == [100], dies_at
    assert torch.load(ckpts / "ckpt_000000100.pt")["w"].tolist() == [1.0, 1.0]


def test_checkpoint_names_carry_the_step_and_bad_values_are_user_errors():
    assert checkpoint_name(120) == "ckpt_000000120.pt" and checkpoint_name(7, "resnet50") == "resnet50_000000007.pt"
    with pytest.raises(UserInputError, match="step -1"):
        checkpoint_name(-1)
    with pytest.raises(UserInputError, match="no '/'"):
        checkpoint_name(1, "a/b")
    with pytest.raises(UserInputError, match="metrics must be numbers or text"):
        save_checkpoint({}, "/tmp/unused-na-test", 1, metrics={"bad": object()})


def test_the_lightning_recipe_saves_checkpoints_the_watcher_takes(tmp_path):
    """The README's PyTorch Lightning callback, as written there, in a real (tiny) Lightning run."""
    pl = pytest.importorskip("pytorch_lightning")
    ckpts = str(tmp_path / "ckpts")

    class AtlasSnapshots(pl.Callback):
        def on_validation_end(self, trainer, pl_module):
            if trainer.is_global_zero:
                save_checkpoint(pl_module.state_dict(), ckpts, trainer.global_step,
                                metrics={k: float(v) for k, v in trainer.callback_metrics.items()})

    class Tiny(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 2)

        def training_step(self, batch, _):
            x, y = batch
            return torch.nn.functional.cross_entropy(self.fc(x), y)

        def validation_step(self, batch, _):
            x, y = batch
            self.log("val_accuracy", (self.fc(x).argmax(1) == y).float().mean())

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    g = torch.Generator().manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(32, 4, generator=g), torch.randint(0, 2, (32,), generator=g))
    loader = torch.utils.data.DataLoader(data, batch_size=8)
    trainer = pl.Trainer(max_epochs=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, accelerator="cpu",
                         callbacks=[AtlasSnapshots()])
    trainer.fit(Tiny(), loader, loader)
    assert complete_steps(tmp_path / "ckpts") == [4, 8, 12]  # 4 batches an epoch, one save per validation
    sidecar = json.loads((tmp_path / "ckpts" / "ckpt_000000008.json").read_text())
    assert 0 <= sidecar["val_accuracy"] <= 1
    assert set(torch.load(tmp_path / "ckpts" / "ckpt_000000012.pt")) == {"fc.weight", "fc.bias"}


def test_the_hugging_face_recipe_saves_checkpoints_the_watcher_takes(tmp_path):
    """The README's Hugging Face TrainerCallback, as written there, in a real (tiny) Trainer run."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    ckpts = str(tmp_path / "ckpts")

    class AtlasSnapshots(transformers.TrainerCallback):
        def on_save(self, args, state, control, model=None, **kwargs):
            if state.is_world_process_zero:
                metrics = next((h for h in reversed(state.log_history) if "eval_accuracy" in h), {})
                save_checkpoint(model.state_dict(), ckpts, state.global_step,
                                metrics={"val_accuracy": metrics.get("eval_accuracy")})

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 2)

        def forward(self, x, labels=None):
            logits = self.fc(x)
            return {"loss": torch.nn.functional.cross_entropy(logits, labels), "logits": logits}

    g = torch.Generator().manual_seed(0)
    xs, ys = torch.randn(32, 4, generator=g), torch.randint(0, 2, (32,), generator=g)
    data = [{"x": x, "labels": y} for x, y in zip(xs, ys)]

    def accuracy(p):
        return {"accuracy": float((p.predictions.argmax(1) == p.label_ids).mean())}

    args = transformers.TrainingArguments(str(tmp_path / "hf"), per_device_train_batch_size=8,
                                          per_device_eval_batch_size=8, num_train_epochs=2, eval_strategy="steps",
                                          eval_steps=4, save_strategy="steps", save_steps=4, report_to=[],
                                          use_cpu=True, disable_tqdm=True, logging_strategy="no")
    trainer = transformers.Trainer(model=Tiny(), args=args, train_dataset=data, eval_dataset=data,
                                   compute_metrics=accuracy, callbacks=[AtlasSnapshots()])
    trainer.train()
    assert complete_steps(tmp_path / "ckpts") == [4, 8]
    assert 0 <= json.loads((tmp_path / "ckpts" / "ckpt_000000008.json").read_text())["val_accuracy"] <= 1
