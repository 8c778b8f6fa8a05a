"""The wsolevaluation metadata layout: round trips, box rescaling, masks, bad files."""
import numpy as np
import pytest
import torch
from PIL import Image

from camkit.data import collate
from camkit.data.wsol import WSOLDataset, export_wsol, read_metadata, resize_box
from camkit.errors import InputError


def tiny_dataset(count=4, height=20, width=30, seed=0):
    """Items like the shapes data set's: image, label, boxes (inclusive), mask."""
    rng = np.random.default_rng(seed)
    items = []
    for i in range(count):
        image = rng.random((3, height, width)).astype(np.float32)
        x0, y0 = rng.integers(0, 10, 2)
        x1, y1 = x0 + rng.integers(3, 15), y0 + rng.integers(3, 8)
        mask = np.zeros((height, width), bool)
        mask[y0:y1 + 1, x0:x1 + 1] = True
        boxes = [[x0, y0, x1, y1]] + ([[0, 0, 4, 4]] if i % 2 else [])
        items.append({"image": torch.from_numpy(image), "label": int(i % 3),
                      "boxes": torch.tensor(boxes), "mask": torch.from_numpy(mask)})
    return items


def test_resize_box_truncates_like_the_reference():
    assert resize_box((10, 20, 30, 40), (100, 200), (224, 224)) == (22, 22, 67, 44)
    assert resize_box((0, 0, 99, 199), (100, 200), (50, 100)) == (0, 0, 49, 99)


def test_export_then_read_round_trip(tmp_path):
    items = tiny_dataset()
    meta = export_wsol(items, tmp_path, "val")
    assert sorted(p.name for p in meta.iterdir()) == ["class_labels.txt", "image_ids.txt",
                                                      "image_sizes.txt", "localization.txt"]
    metadata = read_metadata(meta)
    assert metadata.kind == "boxes" and len(metadata.image_ids) == 4
    assert metadata.sizes[metadata.image_ids[0]] == (30, 20)

    same_size = WSOLDataset(meta, tmp_path / "images", size=None)
    for original, item in zip(items, same_size, strict=True):
        assert item["ok"] and item["error"] == ""
        assert item["label"] == original["label"]
        assert torch.equal(item["boxes"], original["boxes"])
        # PNG stores 8 bits: within half a grey level
        assert torch.allclose(item["image"], original["image"], atol=0.5 / 255 + 1e-6)

    resized = WSOLDataset(meta, tmp_path / "images", size=60)
    item = resized[1]
    assert item["image"].shape == (3, 60, 60)
    expected = [resize_box(b, (30, 20), (60, 60)) for b in items[1]["boxes"].tolist()]
    assert item["boxes"].tolist() == [list(b) for b in expected]
    assert item["image_id"] == "val/000001.png"


def test_mask_metadata_round_trip(tmp_path):
    items = tiny_dataset(count=3)
    meta = export_wsol(items, tmp_path, "test", localization="masks")
    dataset = WSOLDataset(meta, tmp_path / "images", size=None)
    assert dataset.metadata.kind == "masks"
    for original, item in zip(items, dataset, strict=True):
        assert torch.equal(item["mask"], original["mask"])
        assert not item["ignore"].any()
        assert item["boxes"].shape == (0, 4)


def test_reads_reference_files_with_several_boxes_and_ignore_masks(tmp_path):
    images = tmp_path / "images"
    (images / "a").mkdir(parents=True)
    Image.fromarray(np.full((10, 16, 3), 200, np.uint8)).save(images / "a" / "one.jpg")
    mask = np.zeros((10, 16), np.uint8)
    mask[2:5, 3:9] = 1  # any non-zero value is foreground
    Image.fromarray(mask).save(images / "a" / "one_m1.png")
    ignore = np.zeros((10, 16), np.uint8)
    ignore[0:6, 0:12] = 255
    Image.fromarray(ignore).save(images / "a" / "one_ignore.png")
    meta = tmp_path / "meta"
    meta.mkdir()
    (meta / "image_ids.txt").write_text("a/one.jpg\n")
    (meta / "class_labels.txt").write_text("a/one.jpg,7\n")
    (meta / "localization.txt").write_text("a/one.jpg,a/one_m1.png,a/one_ignore.png\n"
                                           "a/one.jpg,a/one_m1.png,\n")
    item = WSOLDataset(meta, images, size=None)[0]
    assert item["label"] == 7 and item["mask"].sum() == 18
    assert item["ignore"].sum() == 6 * 12 - 18  # ignore excludes the foreground

    boxes_meta = tmp_path / "boxes"
    boxes_meta.mkdir()
    (boxes_meta / "image_ids.txt").write_text("a/one.jpg\n")
    (boxes_meta / "class_labels.txt").write_text("a/one.jpg,2\n")
    (boxes_meta / "image_sizes.txt").write_text("a/one.jpg,16,10\n")
    (boxes_meta / "localization.txt").write_text("a/one.jpg,1,2,3,4\na/one.jpg,5,0,15,9\n")
    item = WSOLDataset(boxes_meta, images, size=32)[0]
    assert item["boxes"].tolist() == [[2, 6, 6, 12], [10, 0, 30, 28]]


def test_unreadable_image_is_reported_not_raised(tmp_path):
    meta = export_wsol(tiny_dataset(count=3), tmp_path, "val")
    (tmp_path / "images" / "val" / "000001.png").write_bytes(b"not a png")
    (tmp_path / "images" / "val" / "000002.png").unlink()
    dataset = WSOLDataset(meta, tmp_path / "images", size=16)
    loader = torch.utils.data.DataLoader(dataset, batch_size=3, collate_fn=collate)
    batch = next(iter(loader))
    assert batch["index"] == [0] and [index for index, _ in batch["errors"]] == [1, 2]
    assert "000001.png" in batch["errors"][0][1] and "000002.png" in batch["errors"][1][1]
    assert batch["image"].shape == (1, 3, 16, 16) and batch["boxes"][0].shape == (1, 4)


def test_malformed_metadata_raises_input_error(tmp_path):
    with pytest.raises(InputError):
        read_metadata(tmp_path)
    (tmp_path / "image_ids.txt").write_text("x.png\n")
    (tmp_path / "class_labels.txt").write_text("x.png,cat\n")
    with pytest.raises(InputError, match="class_labels.txt line 1"):
        read_metadata(tmp_path)
    (tmp_path / "class_labels.txt").write_text("x.png,1\n")
    (tmp_path / "localization.txt").write_text("x.png,5,5,1,1\n")
    with pytest.raises(InputError, match="localization.txt line 1"):
        read_metadata(tmp_path)


def test_shapes_data_set_exports_and_reads_back(tmp_path):
    from camkit.data.shapes import Shapes
    shapes = Shapes("val", size=32, length=3)
    meta = export_wsol(shapes, tmp_path, "val")
    read_back = WSOLDataset(meta, tmp_path / "images", size=None)
    for original, item in zip((shapes[i] for i in range(3)), read_back, strict=True):
        assert item["label"] == original["label"]
        assert torch.equal(item["boxes"], original["boxes"])


@pytest.mark.parametrize("name, line, typo", [
    ("class_labels.txt", 2, "val/00001.png,1"),
    ("image_sizes.txt", 3, "val/00002.png,30,20"),
    ("localization.txt", 1, "val/0000.png,1,1,5,5"),
])
def test_case4_a_metadata_line_for_no_image_is_an_error_naming_file_and_line(tmp_path, name, line, typo):
    meta = export_wsol(tiny_dataset(count=3), tmp_path, "val")
    lines = (meta / name).read_text().splitlines()
    lines[line - 1] = typo
    (meta / name).write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=rf"{name} line {line}: image id '{typo.split(',')[0]}' is not in image_ids"):
        read_metadata(meta)


def test_an_image_listed_twice_is_an_error(tmp_path):
    meta = export_wsol(tiny_dataset(count=2), tmp_path, "val")
    (meta / "image_ids.txt").write_text("val/000000.png\nval/000001.png\nval/000000.png\n")
    with pytest.raises(InputError, match="image_ids.txt line 3: image id 'val/000000.png' is listed twice"):
        read_metadata(meta)


def test_item_fingerprint_follows_the_files_without_decoding(tmp_path):
    meta = export_wsol(tiny_dataset(count=3), tmp_path, "val")
    dataset = WSOLDataset(meta, tmp_path / "images", size=16)
    before = [dataset.item_fingerprint(i) for i in range(3)]
    assert len(set(before)) == 3
    assert WSOLDataset(meta, tmp_path / "images", size=24).item_fingerprint(0) != before[0]
    image = tmp_path / "images" / "val" / "000001.png"
    Image.fromarray(255 - np.asarray(Image.open(image))).save(image)
    (meta / "localization.txt").write_text((meta / "localization.txt").read_text().replace(
        "val/000002.png,", "val/000002.png,0,0,1,1\nval/000002.png,", 1))
    dataset = WSOLDataset(meta, tmp_path / "images", size=16)
    after = [dataset.item_fingerprint(i) for i in range(3)]
    assert after[0] == before[0] and after[1] != before[1] and after[2] != before[2]
