"""camkit.imagefiles: every kind of image file decodes to the right RGB at its own size (16-bit,
palette, grayscale, alpha, EXIF orientation), oversized images are refused before decoding, and
output names never collide with each other or with an input."""
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from camkit.errors import InputError
from camkit.imagefiles import check_spares_inputs, find_images, image_size, output_names, read_image


def chunk(kind, data):
    """One PNG chunk: length, kind, data, CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png(path, pixels, bit_depth=16):
    """A PNG written by hand (Pillow cannot write 16-bit RGB): ``pixels`` (H, W, C) uint16."""
    height, width, channels = pixels.shape
    color = {1: 0, 3: 2, 4: 6}[channels]
    rows = b"".join(b"\x00" + pixels[y].astype(">u2").tobytes() for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
                     + chunk(b"IEND", b""))
    return path


def header_only_png(path, width, height):
    """A PNG whose header claims ``width`` × ``height`` pixels: a decompression bomb's shape."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
                     + chunk(b"IEND", b""))
    return path


def test_16_bit_grayscale_keeps_its_level_instead_of_turning_white(tmp_path):
    Image.fromarray(np.full((4, 5), 30000, np.uint16)).save(tmp_path / "g16.png")
    image = read_image(tmp_path / "g16.png")
    assert image.shape == (3, 4, 5) and image.dtype == torch.float32
    torch.testing.assert_close(image, torch.full((3, 4, 5), 30000 / 65535))


def test_16_bit_rgb_and_rgba(tmp_path):
    pixels = np.zeros((2, 3, 3), np.uint16)
    pixels[..., 0], pixels[..., 1], pixels[..., 2] = 30000, 65535, 1000
    image = read_image(png(tmp_path / "rgb16.png", pixels))
    np.testing.assert_allclose(image[:, 0, 0].numpy(), [30000 / 65535, 1.0, 1000 / 65535], atol=1 / 255)
    rgba = np.zeros((2, 3, 4), np.uint16)
    rgba[..., 0], rgba[..., 3] = 65535, 32768           # half-transparent red over white
    image = read_image(png(tmp_path / "rgba16.png", rgba))
    np.testing.assert_allclose(image[:, 0, 0].numpy(), [1.0, 0.5, 0.5], atol=1 / 255)


def test_palette_grayscale_and_one_bit_images(tmp_path):
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[:, :3] = (200, 10, 30)
    rgb[:, 3:] = (5, 250, 90)
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=4).save(tmp_path / "p.png")
    np.testing.assert_allclose(read_image(tmp_path / "p.png").permute(1, 2, 0).numpy(), rgb / 255, atol=1e-6)
    gray = np.arange(24, dtype=np.uint8).reshape(4, 6) * 10
    Image.fromarray(gray).save(tmp_path / "l.png")
    image = read_image(tmp_path / "l.png")
    assert torch.equal(image[0], image[2]) and image[1, 2, 3].item() == pytest.approx(gray[2, 3] / 255)
    Image.fromarray(gray > 100).save(tmp_path / "bits.png")
    assert set(read_image(tmp_path / "bits.png").unique().tolist()) == {0.0, 1.0}


def test_alpha_is_composited_over_the_background(tmp_path):
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., :3] = (0, 0, 255)
    rgba[0, 0, 3], rgba[0, 1, 3], rgba[1, :, 3] = 0, 255, 51     # transparent, opaque, 20 %
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    image = read_image(tmp_path / "a.png")
    np.testing.assert_allclose(image[:, 0, 0].numpy(), [1, 1, 1])             # white background
    np.testing.assert_allclose(image[:, 0, 1].numpy(), [0, 0, 1])
    np.testing.assert_allclose(image[:, 1, 0].numpy(), [0.8, 0.8, 1.0], atol=1e-6)
    on_black = read_image(tmp_path / "a.png", background=(0, 0, 0))
    np.testing.assert_allclose(on_black[:, 1, 0].numpy(), [0, 0, 0.2], atol=1e-6)
    la = Image.fromarray(np.stack([np.full((2, 2), 0, np.uint8), np.full((2, 2), 0, np.uint8)], -1), "LA")
    la.save(tmp_path / "la.png")
    assert torch.equal(read_image(tmp_path / "la.png"), torch.ones(3, 2, 2))  # fully transparent black


def test_exif_orientation_is_applied_and_image_size_reads_it_from_the_header(tmp_path):
    stored = np.zeros((4, 6, 3), np.uint8)
    stored[0, 0] = (255, 0, 0)                      # red at the stored top-left
    exif = Image.Exif()
    exif[0x0112] = 6                                 # "rotate 90° clockwise to display"
    Image.fromarray(stored).save(tmp_path / "phone.png", exif=exif)
    assert image_size(tmp_path / "phone.png") == (6, 4)
    image = read_image(tmp_path / "phone.png")
    assert image.shape == (3, 6, 4)
    np.testing.assert_allclose(image.permute(1, 2, 0).numpy(), np.rot90(stored, k=-1) / 255)
    assert image[0, 0, 3] == 1.0                     # the red corner is now top-right


def test_a_decompression_bomb_is_refused_before_decoding(tmp_path):
    for side in (10_000, 20_000):                    # over Pillow's limit, and over twice it
        bomb = header_only_png(tmp_path / f"bomb{side}.png", side, side)
        with pytest.raises(InputError, match=f"refusing .*bomb{side}.png.*decompression bomb"):
            read_image(bomb)
        with pytest.raises(InputError, match="refusing"):
            image_size(bomb)
    Image.fromarray(np.zeros((10, 20), np.uint8)).save(tmp_path / "small.png")
    with pytest.raises(InputError, match="200 pixels is more than the 100 allowed"):
        read_image(tmp_path / "small.png", max_pixels=100)
    assert read_image(tmp_path / "small.png", max_pixels=200).shape == (3, 10, 20)


def test_unreadable_truncated_and_missing_files_name_the_file(tmp_path):
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(InputError, match="cannot read image .*text.png"):
        read_image(tmp_path / "text.png")
    Image.fromarray(np.zeros((64, 64, 3), np.uint8) + 7).save(tmp_path / "whole.png")
    data = (tmp_path / "whole.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="cut.png"):
        read_image(tmp_path / "cut.png")
    with pytest.raises(InputError, match="image not found"):
        read_image(tmp_path / "nope.png")


def test_find_images_in_files_folders_and_globs(tmp_path):
    for name in ("b/two.png", "a/one.JPG", "a/deep/three.png", "a/notes.txt", "a/.hidden/four.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    found = find_images([tmp_path / "a", str(tmp_path / "b" / "*.png"), tmp_path / "a" / "one.JPG"])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a/deep/three.png", "a/one.JPG", "b/two.png"]
    with pytest.raises(InputError, match="image not found"):
        find_images([tmp_path / "missing.png"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no image files in folder"):
        find_images([tmp_path / "empty"])
    with pytest.raises(InputError, match="no image files match"):
        find_images([str(tmp_path / "*.gif")])


def test_output_names_are_unique_per_input(tmp_path):
    names = output_names([tmp_path / "a" / "shape.png", tmp_path / "b" / "shape.png"])
    assert [n.as_posix() for n in names] == ["a/shape.png", "b/shape.png"]
    names = output_names([tmp_path / "cat.jpg", tmp_path / "cat.png", tmp_path / "dog.jpg"])
    assert [n.as_posix() for n in names] == ["cat.jpg.png", "cat.png.png", "dog.png"]
    assert [n.as_posix() for n in output_names([tmp_path / "x" / "only.tif"])] == ["only.png"]


def test_outputs_never_land_on_an_input(tmp_path, monkeypatch):
    (tmp_path / "shape.png").write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match="would overwrite the input shape.png"):
        check_spares_inputs([tmp_path / "." / "shape.png"], ["shape.png"])
    (tmp_path / "link.png").symlink_to(tmp_path / "shape.png")
    with pytest.raises(InputError, match="would overwrite"):
        check_spares_inputs(["link.png"], ["shape.png"])
    check_spares_inputs([tmp_path / "out" / "shape.png"], ["shape.png"])   # no error
