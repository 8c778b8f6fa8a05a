"""camkit.train: a tiny run learns, checkpoints round-trip atomically, resume is exact."""

import pytest
import torch

from camkit.data import Shapes
from camkit.errors import InputError
from camkit.models import NiN
from camkit.train import (
    TensorSet,
    cosine_lr,
    differences,
    evaluate,
    load_checkpoint,
    plan_run,
    run_settings,
    save_checkpoint,
    stack,
    train,
)


def tiny_model(pool="avg"):
    torch.manual_seed(0)
    return NiN(4, widths=(8, 16), kernel_sizes=(3, 3), downsample=1, pool=pool, dropout=0.1)


def tiny_shapes(split, length):
    return stack(Shapes(split, size=24, length=length, colors=("red", "blue"), textures=("solid", "striped")))


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_data():
    return tiny_shapes("train", 96), tiny_shapes("val", 48)


def test_cosine_schedule_golden_values():
    assert cosine_lr(0, 100, 1.0, warmup=10) == pytest.approx(0.1)
    assert cosine_lr(9, 100, 1.0, warmup=10) == pytest.approx(1.0)
    assert cosine_lr(10, 100, 1.0, warmup=10) == pytest.approx(1.0)
    assert cosine_lr(55, 100, 1.0, warmup=10) == pytest.approx(0.5)
    assert cosine_lr(100, 100, 1.0, warmup=10) == pytest.approx(0.0, abs=1e-12)


def test_tiny_training_lowers_the_loss(tiny_data):
    train_data, val_data = tiny_data
    model = tiny_model()
    before = evaluate(model, train_data)["loss"]
    history = train(model, train_data, val_data, epochs=6, lr=1e-2, batch_size=16, progress=False)
    after = evaluate(model, train_data)["loss"]
    assert after < 0.8 * before
    assert [r["epoch"] for r in history] == [1, 2, 3, 4, 5, 6]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert not model.training


def test_balanced_class_weights_are_inverse_frequencies():
    labels = torch.tensor([0, 0, 0, 1])
    data = TensorSet(torch.rand(4, 3, 16, 16).half(), labels)
    from camkit.train import _class_weights
    torch.testing.assert_close(_class_weights("balanced", data.labels, 2), torch.tensor([4 / 6, 2.0]))
    with pytest.raises(InputError):
        _class_weights("inverse", labels, 2)


def test_checkpoint_round_trip_is_atomic_and_weights_only(tmp_path):
    state = {"format": "camkit-train-v1", "epoch": 3, "model": {"w": torch.arange(5.0)}, "history": [{"a": 1.0}]}
    path = tmp_path / "run.ckpt"
    save_checkpoint(path, state)
    loaded = load_checkpoint(path)
    assert loaded["epoch"] == 3 and loaded["history"] == [{"a": 1.0}]
    torch.testing.assert_close(loaded["model"]["w"], torch.arange(5.0))
    assert [p.name for p in tmp_path.iterdir()] == ["run.ckpt"], "no temporary file is left behind"
    torch.save({"something": "else"}, tmp_path / "other.pt")
    with pytest.raises(InputError, match="not a camkit training checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


class _Stop(Exception):
    pass


def _stop_after(epoch):
    def log(record):
        if record["epoch"] == epoch:
            raise _Stop
    return log


def test_resume_continues_exactly(tiny_data, tmp_path):
    train_data, val_data = tiny_data
    options = dict(epochs=3, lr=5e-3, batch_size=32, progress=False, seed=1)
    straight = tiny_model()
    straight_history = train(straight, train_data, val_data, **options)

    path = tmp_path / "run.ckpt"
    with pytest.raises(_Stop):  # killed after epoch 2 was saved
        train(tiny_model(), train_data, val_data, **options, checkpoint=path, log=_stop_after(2))
    assert load_checkpoint(path)["epoch"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["run.ckpt"]

    resumed = tiny_model()
    history = train(resumed, train_data, val_data, **options, checkpoint=path, resume=True)
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert history[2]["train_loss"] == pytest.approx(straight_history[2]["train_loss"], rel=1e-5)
    for name, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], value, rtol=1e-5, atol=1e-6, msg=name)
    # A finished run resumed again does no more work and returns the same history.
    again = train(tiny_model(), train_data, val_data, **options, checkpoint=path, resume=True)
    assert again == history


def test_no_resume_starts_afresh(tiny_data, tmp_path):
    path = tmp_path / "run.ckpt"
    train(tiny_model(), tiny_data[0], None, epochs=1, lr=5e-3, batch_size=48, progress=False, checkpoint=path)
    history = train(tiny_model(), tiny_data[0], None, epochs=1, lr=5e-3, batch_size=48, progress=False,
                    checkpoint=path, resume=False)
    assert len(history) == 1 and load_checkpoint(path)["epoch"] == 1


def test_bad_options_raise(tiny_data):
    with pytest.raises(InputError, match="optimizer"):
        train(tiny_model(), tiny_data[0], epochs=1, optimizer="lion", progress=False)
    with pytest.raises(InputError, match="epochs"):
        train(tiny_model(), tiny_data[0], epochs=0, progress=False)


def test_case5_a_checkpoint_of_another_run_is_refused_and_the_difference_named(tiny_data, tmp_path):
    train_data, val_data = tiny_data
    path = tmp_path / "run.ckpt"
    options = dict(epochs=1, lr=5e-3, batch_size=48, progress=False, checkpoint=path)
    train(tiny_model(), train_data, val_data, **options)
    before = path.read_bytes()
    with pytest.raises(InputError, match=r"other settings \(lr: 0\.005 → 0\.01\)"):
        train(tiny_model(), train_data, val_data, **{**options, "lr": 1e-2})
    with pytest.raises(InputError, match=r"other settings \(data \(other content\)\)"):
        train(tiny_model(), tiny_shapes("train", 48), val_data, **options)
    with pytest.raises(InputError, match=r"model.config.pool: 'avg' → 'max'"):
        train(tiny_model("max"), train_data, val_data, **options)
    with pytest.raises(InputError, match="holds a run of 1 epochs .* pass --resume"):
        train(tiny_model(), train_data, val_data, **{**options, "epochs": 2})
    assert path.read_bytes() == before                   # nothing was trained or written
    said = []
    history = train(tiny_model(), train_data, val_data, **{**options, "epochs": 2}, resume=True, notify=said.append)
    assert said == [f"resuming {path} from epoch 2 of 2"] and [r["epoch"] for r in history] == [1, 2]
    with pytest.raises(InputError, match="has already trained 2 epochs; 1 is fewer"):
        train(tiny_model(), train_data, val_data, **options, resume=True)
    said.clear()
    again = train(tiny_model(), train_data, val_data, **{**options, "epochs": 2}, notify=said.append)
    assert again == history and said == [f"{path} has finished all 2 epochs: nothing to train"]


def test_plan_run_without_or_with_an_older_checkpoint(tiny_data, tmp_path):
    settings = run_settings(tiny_model(), epochs=2, lr=1e-3, optimizer="adamw", weight_decay=0.0, momentum=0.9,
                            batch_size=8, warmup_epochs=0.5, class_weights=None, label_smoothing=0.0, flip=True,
                            seed=0, data=tiny_data[0])
    assert plan_run(None, settings).start_epoch == 0 and plan_run(None, settings).message == ""
    with pytest.raises(InputError, match="nothing to resume"):
        plan_run(tmp_path / "none.ckpt", settings, resume=True)
    old = tmp_path / "old.ckpt"
    save_checkpoint(old, {"format": "camkit-train-v1", "epoch": 1, "model": {}, "optimizer": {}, "history": [{}]})
    with pytest.raises(InputError, match="does not record its settings"):
        plan_run(old, settings)
    plan = plan_run(old, settings, resume=True)
    assert plan.start_epoch == 1 and plan.message == f"resuming {old} from epoch 2 of 2"
    assert plan_run(old, settings, resume=False).message == f"overwriting {old}: starting afresh"
    assert differences({"a": 1, "b": {"c": [1]}}, {"a": 2, "b": {"c": [2]}, "d": 0}) == ["a: 1 → 2", "b.c: [1] → [2]"]


def test_case7_bad_numbers_and_unreadable_checkpoints_raise(tiny_data, tmp_path):
    for option, value in (("lr", float("nan")), ("lr", 0.0), ("weight_decay", -1.0), ("momentum", float("inf"))):
        with pytest.raises(InputError, match=option):
            train(tiny_model(), tiny_data[0], epochs=1, progress=False, **{option: value})
    with pytest.raises(InputError, match="batch_size"):
        train(tiny_model(), tiny_data[0], epochs=1, batch_size=0, progress=False)
    (tmp_path / "junk.ckpt").write_text("junk")
    with pytest.raises(InputError, match="cannot read checkpoint .*junk.ckpt"):
        train(tiny_model(), tiny_data[0], epochs=1, progress=False, checkpoint=tmp_path / "junk.ckpt")
