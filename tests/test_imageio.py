"""Decoding photos faithfully: every mode Pillow opens becomes the same 8-bit RGB as the photo in 8 bits."""

import io

import numpy as np
import pytest
from PIL import Image

from maskdet.core.imageio import BadImage, decode_image
from tests.conftest import encode, pattern_image

MAX_PIXELS = 40_000_000


def saved(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def grey() -> np.ndarray:
    """A photo-like 8-bit greyscale picture, the reference the wider encodings must come back to."""
    return np.asarray(Image.fromarray(pattern_image(5, size=(96, 80))).convert("L"))


@pytest.mark.parametrize("encoding", ["png16", "tiff_float_0_1", "tiff_float_0_255", "tiff_int32_16bit_range"])
def test_wide_greyscale_comes_back_as_the_8_bit_photo(grey, encoding):
    data = {
        "png16": lambda: saved(Image.fromarray(grey.astype(np.uint16) * 257), "PNG"),
        "tiff_float_0_1": lambda: saved(Image.fromarray((grey / 255).astype(np.float32)), "TIFF"),
        "tiff_float_0_255": lambda: saved(Image.fromarray(grey.astype(np.float32)), "TIFF"),
        "tiff_int32_16bit_range": lambda: saved(Image.fromarray(grey.astype(np.int32) * 257), "TIFF"),
    }[encoding]()
    decoded = decode_image(data, MAX_PIXELS)
    assert decoded.dtype == np.uint8 and decoded.shape == (*grey.shape, 3)
    assert np.abs(decoded.astype(int) - grey[..., None]).max() <= 1


def test_palette_png_with_transparency_bytes_is_laid_on_white():
    photo = Image.fromarray(pattern_image(6, size=(64, 48))).quantize(16)
    transparency = bytes([0] + [255] * 15)  # palette entry 0 fully transparent, given as bytes (tRNS)
    decoded = decode_image(saved(photo, "PNG", transparency=transparency), MAX_PIXELS)
    indices = np.asarray(photo)
    opaque = np.asarray(photo.convert("RGB"))
    assert (decoded[indices == 0] == 255).all() and (indices == 0).any()
    np.testing.assert_array_equal(decoded[indices != 0], opaque[indices != 0])


def test_16_bit_greyscale_png_with_a_transparent_level_is_laid_on_white(grey):
    """Hostile files, round two (H): the tRNS grey level of a 16-bit PNG was decoded black."""
    wide = grey.astype(np.uint16) * 257
    wide[:10] = 7  # the transparent level: a band across the top
    decoded = decode_image(saved(Image.fromarray(wide), "PNG", transparency=7), MAX_PIXELS)
    assert (decoded[:10] == 255).all()
    assert np.abs(decoded[10:].astype(int) - grey[10:, :, None]).max() <= 1


def many_scans(scans: int) -> bytes:
    """A progressive greyscale JPEG with its last scan repeated until it has `scans` scans: the shape of the
    progressive-JPEG CPU bomb (thousands of scans, each a pass over the picture), small."""
    data = saved(Image.fromarray(pattern_image(9, size=(64, 48))).convert("L"), "JPEG", progressive=True)
    last, end = data.rindex(b"\xff\xda"), data.rindex(b"\xff\xd9")
    return data[:end] + data[last:end] * (scans - data.count(b"\xff\xda")) + data[end:]


def test_a_jpeg_of_thousands_of_scans_is_refused_before_decoding_and_real_progressive_ones_pass():
    """Hostile files, round two (A): a 2 MB JPEG of 28,967 empty scans took 84 s of CPU to import."""
    progressive = saved(Image.fromarray(pattern_image(9, size=(64, 48))), "JPEG", progressive=True)
    assert decode_image(progressive, MAX_PIXELS).shape == (48, 64, 3)
    with pytest.raises(BadImage, match="a progressive JPEG of 5,000 scans, where cameras and encoders write at most a "
                                       "few tens"):
        decode_image(many_scans(5000), MAX_PIXELS)


def test_cmyk_jpeg_and_animated_gif_first_frame():
    rgb = pattern_image(7, size=(64, 48))
    cmyk = decode_image(saved(Image.fromarray(rgb).convert("CMYK"), "JPEG", quality=100), MAX_PIXELS)
    assert np.abs(cmyk.astype(int) - rgb).mean() < 4
    frames = [Image.fromarray(np.full((40, 40, 3), value, np.uint8)) for value in (30, 220)]
    gif = saved(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert abs(int(decode_image(gif, MAX_PIXELS).mean()) - 30) <= 2


def test_formats_maskdet_does_not_read_are_refused_with_the_ones_it_does():
    ppm = saved(Image.fromarray(pattern_image(8)), "PPM")
    with pytest.raises(BadImage, match=r"not an image file \(JPEG, PNG, BMP, WebP, GIF or TIFF expected\)"):
        decode_image(ppm, MAX_PIXELS)
    assert decode_image(encode(pattern_image(8)), MAX_PIXELS).shape == (80, 96, 3)


def test_pillows_bomb_guard_stays_on():
    assert Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS > 0
    with pytest.raises(BadImage, match="image too large"):
        decode_image(saved(Image.new("L", (20000, 20000)), "PNG"), 10**12)  # 400 MP: Pillow's guard refuses it


def test_a_palette_png_with_transparency_imports_evaluates_and_predicts(store, detector, tmp_path):
    from maskdet.data.sources import Candidate
    from maskdet.serving.predict import evaluate_candidates, predict_image
    from tests.test_predict import build_classifier

    classifier = build_classifier(tmp_path / "model.onnx")
    photo = Image.fromarray(pattern_image(9, size=(96, 80))).quantize(16)
    data = saved(photo, "PNG", transparency=bytes([0, 128] + [255] * 14))
    report = store.add_images([("logo.png", data)], "with_mask", detector)
    assert report.added == ["logo.png"] and report.rejected == []
    assert store.load_image(store.faces()[0]).shape == (80, 96, 3)
    evaluation = evaluate_candidates([Candidate("with_mask/logo.png", "with_mask", lambda: data)], [], detector,
                                     classifier, MAX_PIXELS)
    assert evaluation["num_samples"] == 1 and evaluation["rejected_files"] == []
    image, faces = predict_image(data, detector, classifier, MAX_PIXELS)
    assert image.shape == (80, 96, 3) and faces == []


def test_a_nearly_blank_large_picture_is_refused_by_its_pixels_per_byte():
    blank = saved(Image.new("L", (1200, 1000), 255), "PNG")  # 1.2 megapixels in a few hundred bytes
    with pytest.raises(BadImage) as error:
        decode_image(blank, MAX_PIXELS)
    assert str(error.value) == (f"image too large for its file: 1200x1000 pixels in {len(blank):,} bytes, over 100 "
                                "pixels a byte (a nearly blank picture, as decompression bombs are; re-save it as JPEG "
                                "if it is a photo)")
    flat_jpeg = saved(Image.new("RGB", (1200, 1000), (200, 180, 160)), "JPEG", quality=75)  # a JPEG never gets there
    assert decode_image(flat_jpeg, MAX_PIXELS).shape == (1000, 1200, 3)
    small_blank = saved(Image.new("L", (256, 256), 255), "PNG")  # 256x256 or less: cheap, so let through
    assert decode_image(small_blank, MAX_PIXELS).shape == (256, 256, 3)
    with pytest.raises(BadImage, match="257x256 pixels in"):
        decode_image(saved(Image.new("L", (257, 256), 255), "PNG"), MAX_PIXELS)
    with pytest.raises(BadImage, match="1200x1000 pixels in 1,000 bytes"):  # counted as it arrived (in a zip)
        decode_image(flat_jpeg, MAX_PIXELS, arrived_bytes=1000)
