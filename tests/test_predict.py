"""maskdet.serving.predict at library level: real onnxruntime models, real MTCNN on the shared photos.

Models are built directly (MaskNet + export_classifier, 96x96 input) instead of trained: a random network
for checking that classify_faces crops and batches like the crop rule says, and a "constant" network
(zeroed head weights, fixed bias) whose output is known exactly, for thresholds and evaluation counts.
"""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from maskdet.core.contract import Preprocess
from maskdet.core.errors import StoreError
from maskdet.core.imageio import BadImage, decode_image
from maskdet.serving.classifier import load_classifier
from maskdet.serving.media import prediction_rows
from maskdet.serving.predict import (PALETTE, UNCERTAIN_COLOR, FacePrediction, annotate, classify_faces,
                                     draw_predictions, evaluate_folder, label_color, label_places, legend, overlaps,
                                     predict_image)
from maskdet.training.export import export_classifier
from maskdet.training.model import MaskNet
from maskdet.vision.faces import CropRule, Face, FaceDetector, crop_face
from tests.conftest import encode, pattern_image, write_dataset

LABELS = ["with_mask", "without_mask"]
SIZE = 96
MAX_PIXELS = 40_000_000
CONSTANT_BIAS = (2.0, 0.0)  # softmax([2, 0]) for every input
CONSTANT_TOP = math.exp(2) / (math.exp(2) + 1)  # 0.8808


def build_classifier(path: Path, bias=None, seed: int = 0):
    torch.manual_seed(seed)
    preprocess = Preprocess(input_size=SIZE)
    model = MaskNet(len(LABELS), preprocess).eval()
    if bias is not None:
        with torch.no_grad():
            model.head[1].weight.zero_()
            model.head[1].bias.copy_(torch.tensor(bias))
    return load_classifier(export_classifier(model, path, LABELS, preprocess, CropRule(1.25, SIZE)))


@pytest.fixture(scope="module")
def random_classifier(tmp_path_factory):
    return build_classifier(tmp_path_factory.mktemp("random") / "model.onnx")


@pytest.fixture(scope="module")
def constant_classifier(tmp_path_factory):
    """Always says with_mask with probability 0.8808 (head weights zero, bias [2, 0])."""
    return build_classifier(tmp_path_factory.mktemp("constant") / "model.onnx", bias=CONSTANT_BIAS)


def photos_with_faces(shared_data: Path, detector, count: int, label: str = "*") -> list[tuple[Path, np.ndarray, list[Face]]]:
    """The first `count` shared photos (sorted) of a class in which the detector finds exactly one clear face."""
    found = []
    for path in sorted(shared_data.glob(f"{label}/*")):
        if path.suffix.lower() not in (".jpg", ".jpeg", ".png"):
            continue
        image = decode_image(path.read_bytes(), MAX_PIXELS)
        faces = detector.detect([image])[0]
        if len(faces) == 1 and faces[0].probability > 0.95:
            found.append((path, image, faces))
            if len(found) == count:
                return found
    pytest.fail(f"fewer than {count} single-face photos in {shared_data}")


def flat_image(height=160, width=200, value=90) -> np.ndarray:
    return np.full((height, width, 3), value, np.uint8)


def prediction(box, label="with_mask", probability=0.9) -> FacePrediction:
    return FacePrediction(box, 0.99, label, probability, {"with_mask": probability, "without_mask": 1 - probability})


# ---- classify_faces ------------------------------------------------------------------------------------

def test_classify_faces_on_a_real_photo_uses_the_crop_rule(shared_data, detector, random_classifier):
    path, image, faces = photos_with_faces(shared_data, detector, 1)[0]
    predictions = classify_faces(image, faces, random_classifier)
    assert len(predictions) == 1
    result = predictions[0]
    assert result.box == faces[0].box and result.face_probability == faces[0].probability
    assert list(result.probabilities) == LABELS
    assert sum(result.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    expected = random_classifier.predict(crop_face(image, faces[0].box, random_classifier.rule)[None])[0]
    assert [result.probabilities[k] for k in LABELS] == pytest.approx(expected.tolist(), abs=1e-5)
    assert result.label == LABELS[int(expected.argmax())]
    assert result.probability == pytest.approx(float(expected.max()), abs=1e-6)
    as_json = json.loads(json.dumps(result.to_dict()))
    assert as_json["label"] == result.label and len(as_json["box"]) == 4
    assert classify_faces(image, [], random_classifier) == []


def test_classify_faces_batches_several_faces_in_order(random_classifier):
    image = pattern_image(3, size=(240, 160))
    faces = [Face((10.0, 10.0, 70.0, 80.0), 0.99), Face((120.0, 40.0, 200.0, 140.0), 0.9),
             Face((0.0, 90.0, 40.0, 160.0), 0.8)]
    predictions = classify_faces(image, faces, random_classifier)
    assert [p.box for p in predictions] == [f.box for f in faces]
    assert [p.face_probability for p in predictions] == [0.99, 0.9, 0.8]
    one_by_one = [classify_faces(image, [face], random_classifier)[0].probabilities for face in faces]
    for batched, single in zip(predictions, one_by_one):
        assert [batched.probabilities[k] for k in LABELS] == pytest.approx([single[k] for k in LABELS], abs=1e-5)


def test_classify_faces_threshold(constant_classifier):
    image = pattern_image(4, size=(120, 120))
    faces = [Face((20.0, 20.0, 90.0, 100.0), 0.99)]
    confident = classify_faces(image, faces, constant_classifier, threshold=0.85)[0]
    assert confident.label == "with_mask"
    assert confident.probability == pytest.approx(CONSTANT_TOP, abs=1e-5)
    unsure = classify_faces(image, faces, constant_classifier, threshold=0.9)[0]
    assert unsure.label == "uncertain"
    assert unsure.probability == pytest.approx(CONSTANT_TOP, abs=1e-5)  # the top probability is still reported
    assert unsure.probabilities["without_mask"] == pytest.approx(1 - CONSTANT_TOP, abs=1e-5)


# ---- annotate ------------------------------------------------------------------------------------------

GREEN, RED, BLUE, ORANGE, PURPLE = PALETTE[:5]
AMBER, WHITE, BLACK = (255, 176, 0), (255, 255, 255), (0, 0, 0)


@pytest.mark.parametrize("labels, colors", [
    (["with_mask", "without_mask"], [GREEN, RED]),  # two-class models look as they always did
    (["masked", "bare"], [GREEN, RED]),
    (["mask_incorrect", "with_mask", "without_mask"], [AMBER, GREEN, RED]),  # by meaning, not by place
    (["without_mask", "hat", "mask_weared_incorrect", "with_mask", "scarf"], [RED, BLUE, AMBER, GREEN, ORANGE]),
    (["hat", "without_mask", "scarf"], [GREEN, RED, BLUE]),  # others take the colours the meanings leave
    (["mask_incorrect", "mask_worn_wrong", "with_mask"], [AMBER, RED, GREEN]),  # one class a meaning
], ids=["two-classes", "other-names", "worn-wrong-first", "mixed", "others-fill-in", "two-worn-wrong"])
def test_a_class_colour_follows_its_meaning(labels, colors):
    assert [label_color(label, labels) for label in labels] == colors
    assert label_color("uncertain", labels) == UNCERTAIN_COLOR
    assert legend(labels) == [*zip(labels, colors), ("uncertain", UNCERTAIN_COLOR)]


@pytest.mark.parametrize("label, color, text", [("with_mask", GREEN, WHITE), ("without_mask", RED, WHITE),
                                                ("mask_incorrect", AMBER, BLACK), ("hat", BLUE, WHITE),
                                                ("uncertain", UNCERTAIN_COLOR, WHITE)])
def test_annotate_draws_the_box_in_the_class_colour_inside_its_edges(label, color, text):
    image = flat_image()
    before = image.copy()
    x1, y1, x2, y2 = 40, 60, 120, 140
    out = annotate(image, [prediction((float(x1), float(y1), float(x2), float(y2)), label)],
                   ["with_mask", "without_mask", "mask_incorrect", "hat"])
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.array_equal(image, before)  # the caller's array is not drawn on
    middle_y, middle_x = (y1 + y2) // 2, (x1 + x2) // 2
    for y, x in ((middle_y, x1), (middle_y, x1 + 1), (middle_y, x2), (middle_y, x2 - 1), (y2, middle_x),
                 (y2 - 1, middle_x)):
        assert tuple(out[y, x]) == color, (y, x)
    background = tuple(before[0, 0])
    for y, x in ((middle_y, x1 - 1), (middle_y, x2 + 1), (y2 + 1, middle_x), (middle_y, middle_x),
                 (middle_y, x1 + 6), (middle_y, x2 - 6)):
        assert tuple(out[y, x]) == background, (y, x)
    # the label sits on a filled strip just above the box, its text white, or black on amber (white would fade)
    assert tuple(out[y1 - 1, x1 + 1]) == color
    strip = out[:y1, x1:]
    assert (strip == text).all(axis=-1).sum() > 20
    assert not (strip == (BLACK if text == WHITE else WHITE)).all(axis=-1).any()
    assert np.array_equal(out[y2 + 1:], before[y2 + 1:])  # nothing drawn below the box


def test_annotate_box_at_the_top_edge_puts_the_label_below():
    image = flat_image()
    x1, y1, x2, y2 = 30, 0, 110, 70
    out = annotate(image, [prediction((float(x1), float(y1), float(x2), float(y2)), "without_mask")], LABELS)
    color = PALETTE[1]
    assert out.shape == image.shape
    assert tuple(out[0, (x1 + x2) // 2]) == color  # the top edge of the box is on the first row
    assert tuple(out[y2 + 1, x1 + 1]) == tuple(image[0, 0])  # a 1 px gap, then the label strip
    assert tuple(out[y2 + 3, x1 + 1]) == color
    strip = out[y2 + 2:, x1:]
    assert (strip == color).all(axis=-1).sum() > 100
    assert (strip == 255).all(axis=-1).any()
    assert (out[:, :x1] == image[:, :x1]).all()  # nothing left of the box


def test_annotate_several_faces_each_in_its_colour():
    image = flat_image(200, 300)
    out = annotate(image, [prediction((20.0, 60.0, 100.0, 150.0), "with_mask"),
                           prediction((180.0, 60.0, 260.0, 150.0), "without_mask")], LABELS)
    assert tuple(out[100, 20]) == PALETTE[0]
    assert tuple(out[100, 260]) == PALETTE[1]


def test_a_photo_numbers_its_faces_in_the_order_of_its_table():
    """annotate (photos) starts each label with the face's number, as prediction_rows numbers them; the live overlay
    (draw_predictions) does not: the numbered strip is longer by "1: "."""
    image = flat_image(200, 600)
    faces = [prediction((20.0, 60.0, 100.0, 150.0), "with_mask"), prediction((320.0, 60.0, 400.0, 150.0), "with_mask")]
    plain = image.copy()
    draw_predictions(plain, faces, LABELS)
    numbered = annotate(image, faces, LABELS)
    for x1 in (20, 320):
        def strip_end(drawn: np.ndarray) -> int:  # the last pixel of the label strip, on its bottom row
            return int(np.flatnonzero((drawn[59, x1:x1 + 280] == PALETTE[0]).all(axis=-1)).max())
        assert strip_end(numbered) > strip_end(plain) + 10, (x1, strip_end(plain), strip_end(numbered))
    assert [row["face"] for row in prediction_rows(faces)] == [1, 2]


# ---- where a label goes -----------------------------------------------------------------------------------

STRIP = (80, 20)  # a label strip's width and height


def strips(places, size=STRIP):
    return [(x, y, x + size[0], y + size[1]) for x, y in places]


def test_a_label_goes_above_its_face_and_stays_inside_the_picture():
    assert label_places([(50, 100, 150, 200)], [STRIP], (400, 300)) == [(50, 80)]
    assert label_places([(350, 100, 395, 150)], [STRIP], (400, 300)) == [(320, 80)]  # moved in from the right edge
    assert label_places([(-6, 100, 40, 150)], [STRIP], (400, 300)) == [(0, 80)]  # a box reaching past the left edge


def test_a_label_at_the_top_edge_goes_below_its_face_or_inside_it():
    assert label_places([(50, 5, 150, 100)], [STRIP], (400, 300)) == [(50, 102)]  # no room above: below, 1 px apart
    assert label_places([(50, -3, 150, 290)], [STRIP], (400, 300)) == [(50, 0)]  # nor below: inside the box's top


def test_a_label_never_covers_the_live_stats():
    """The stats strip in the top-left corner (fps, stage times) is kept clear: a label that would go above its face
    into it goes below the face, or inside its top (then under the stats) when the face fills the frame's height."""
    stats = (0, 0, 300, 25)
    assert label_places([(10, 30, 110, 130)], [STRIP], (640, 480), [stats]) == [(10, 132)]
    assert label_places([(10, 10, 110, 470)], [STRIP], (640, 480), [stats]) == [(10, 25)]
    assert label_places([(400, 30, 500, 130)], [STRIP], (640, 480), [stats]) == [(400, 10)]  # beside them: above


def test_labels_in_a_crowded_photo_do_not_cover_each_other():
    """Faces close together: a label that would cover one placed before it moves down below that one."""
    boxes = [(100, 100, 180, 180), (150, 105, 230, 185)]
    places = label_places(boxes, [(120, 20)] * 2, (640, 480))
    assert places == [(100, 80), (150, 100)]  # the second under the first's strip
    rng = np.random.default_rng(5)
    crowd = [(int(x), int(y), int(x) + 60, int(y) + 60) for x, y in rng.integers(0, 560, (14, 2)) * [1, 0.75]]
    places = label_places(crowd, [(110, 18)] * len(crowd), (640, 480), [(0, 0, 250, 22)])
    drawn = strips(places, (110, 18))
    assert all(0 <= x1 and x2 <= 640 and 0 <= y1 and y2 <= 480 for x1, y1, x2, y2 in drawn)
    assert not [(a, b) for i, a in enumerate(drawn) for b in drawn[i + 1:] + [(0, 0, 250, 22)] if overlaps(a, b)]


def test_a_label_is_never_drawn_over_the_area_kept_clear():
    """Drawn over a face as tall as the picture, under a kept-clear corner (the live stats): nothing but the box's
    lines in the corner, the strip's colour in the box's top rows just below it."""
    face = prediction((20.0, 2.0, 180.0, 195.0), "without_mask")
    image = flat_image(200, 400)
    draw_predictions(image, [face], LABELS)
    assert (image[4, 30:60] == PALETTE[1]).all()  # no room above or below: the strip (its padding) in the box's top
    corner = flat_image(200, 400)
    draw_predictions(corner, [face], LABELS, keep_clear=[(0, 0, 200, 40)])
    assert (corner[5:38, 25:60] == 90).all()
    assert (corner[41, 30:60] == PALETTE[1]).all()


def test_annotate_without_predictions_returns_the_image_unchanged():
    image = pattern_image(11, size=(150, 100))
    out = annotate(image, [], LABELS)
    assert out.shape == image.shape and out.dtype == image.dtype
    assert np.array_equal(out, image)


# ---- predict_image -------------------------------------------------------------------------------------

def test_predict_image_caps_faces_at_max_faces_keeping_the_largest(shared_data, detector, random_classifier):
    photos = photos_with_faces(shared_data, detector, 3)
    # a "group photo": the three faces cut out at different sizes and put side by side
    sizes = (240, 200, 160)
    tiles = [np.zeros((max(sizes), size, 3), np.uint8) for size in sizes]
    for tile, size, (_, image, faces) in zip(tiles, sizes, photos):
        tile[:size] = crop_face(image, faces[0].box, CropRule(2.0, size))
    data = encode(np.concatenate(tiles, axis=1), "PNG")
    height = max(sizes)

    image, everything = predict_image(data, detector, random_classifier, MAX_PIXELS)
    assert image.shape == (height, sum(t.shape[1] for t in tiles), 3)
    assert len(everything) == 3
    areas = [(p.box[2] - p.box[0]) * (p.box[3] - p.box[1]) for p in everything]
    assert areas == sorted(areas, reverse=True)

    _, capped = predict_image(data, detector, random_classifier, MAX_PIXELS, max_faces=2)
    assert [p.box for p in capped] == [p.box for p in everything[:2]]
    _, none = predict_image(data, detector, random_classifier, MAX_PIXELS, max_faces=0)
    assert none == []


def crowd_photo(shared_data: Path, detector, columns: int = 6, rows: int = 5, side: int = 100) -> bytes:
    """A "crowd photo": columns x rows bare faces of the shared photos, each cut at side x side pixels, in a grid."""
    faces = photos_with_faces(shared_data, detector, columns * rows, "without_mask")
    grid = np.zeros((rows * side, columns * side, 3), np.uint8)
    for index, (_, image, found) in enumerate(faces):
        row, column = divmod(index, columns)
        grid[row * side:(row + 1) * side, column * side:(column + 1) * side] = crop_face(image, found[0].box,
                                                                                         CropRule(1.6, side))
    return encode(grid, "PNG")


def test_a_30_face_photo_returns_its_30_faces(shared_data, detector, random_classifier):
    data = crowd_photo(shared_data, detector)
    photos = FaceDetector.for_photos(random_classifier.detector)  # the model's settings, as predict uses them
    _, predictions = predict_image(data, photos, random_classifier, MAX_PIXELS)
    assert random_classifier.detector.max_faces >= 200 and len(predictions) == 30
    centres = {(int((p.box[0] + p.box[2]) / 2) // 100, int((p.box[1] + p.box[3]) / 2) // 100) for p in predictions}
    assert len(centres) == 30  # one face in each cell of the grid


def test_predict_image_marks_faces_below_the_threshold_uncertain(shared_data, detector, constant_classifier):
    path, _, faces = photos_with_faces(shared_data, detector, 1)[0]
    data = path.read_bytes()
    _, sure = predict_image(data, detector, constant_classifier, MAX_PIXELS, threshold=0.5)
    _, unsure = predict_image(data, detector, constant_classifier, MAX_PIXELS, threshold=0.95)
    assert [p.label for p in sure] == ["with_mask"]
    assert [p.label for p in unsure] == ["uncertain"]
    assert sure[0].box == unsure[0].box == faces[0].box
    assert unsure[0].probability == pytest.approx(CONSTANT_TOP, abs=1e-5)
    annotated = annotate(decode_image(data, MAX_PIXELS), unsure, constant_classifier.labels)
    x1, y1, _, y2 = (round(v) for v in unsure[0].box)
    assert tuple(annotated[(y1 + y2) // 2, x1]) == UNCERTAIN_COLOR  # the box's left edge, in grey


def test_predict_image_on_a_picture_without_faces_and_on_bad_bytes(detector, random_classifier):
    image, predictions = predict_image(encode(pattern_image(5, size=(200, 150))), detector, random_classifier,
                                       MAX_PIXELS)
    assert image.shape == (150, 200, 3) and predictions == []
    with pytest.raises(BadImage, match="not an image"):
        predict_image(b"definitely not a picture", detector, random_classifier, MAX_PIXELS)
    truncated = encode(pattern_image(6, size=(200, 150)))
    with pytest.raises(BadImage, match="corrupt or truncated"):
        predict_image(truncated[: len(truncated) // 2], detector, random_classifier, MAX_PIXELS)


# ---- evaluate_folder -----------------------------------------------------------------------------------

def test_evaluate_folder_scores_readable_images_and_lists_rejected_files(tmp_path, detector, constant_classifier):
    root = write_dataset(tmp_path / "eval", per_class=3)
    (root / "without_mask" / "img1000.jpg").unlink()  # 3 with_mask, 2 without_mask
    truncated = encode(pattern_image(50))
    (root / "with_mask" / "broken.jpg").write_bytes(truncated[: len(truncated) // 2])
    (root / "without_mask" / "notes.txt").write_text("not an image")
    (root / "stray.jpg").write_bytes(encode(pattern_image(51)))
    calls = []

    report = evaluate_folder(root, detector, constant_classifier, MAX_PIXELS, lambda *a: calls.append(a))
    assert report["num_samples"] == 5
    assert report["labels"] == LABELS
    assert report["confusion_matrix"] == [[3, 0], [2, 0]]  # the constant model always says with_mask
    assert report["accuracy"] == pytest.approx(0.6)
    assert report["no_face"] == 5 and report["face_found_rate"] == 0.0
    assert report["accuracy_no_face"] == pytest.approx(0.6) and report["accuracy_face_found"] is None
    assert sorted(m["name"] for m in report["misclassified"]) == ["without_mask/img1001.jpg",
                                                                 "without_mask/img1002.jpg"]
    rejected = {r["name"]: r["reason"] for r in report["rejected_files"]}
    assert set(rejected) == {"with_mask/broken.jpg", "without_mask/notes.txt", "stray.jpg"}
    assert "corrupt or truncated" in rejected["with_mask/broken.jpg"]
    assert "not an image" in rejected["without_mask/notes.txt"]
    assert "class folder" in rejected["stray.jpg"]
    assert calls[-1] == (7, 7)  # every candidate file counted, readable or not
    json.dumps(report)


def test_evaluate_folder_crops_the_detected_faces_of_real_photos(tmp_path, shared_data, detector,
                                                                 random_classifier):
    photos = photos_with_faces(shared_data, detector, 1, "with_mask") + \
        photos_with_faces(shared_data, detector, 1, "without_mask")
    for path, _, _ in photos:
        target = tmp_path / "eval" / path.parent.name / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    report = evaluate_folder(tmp_path / "eval", detector, random_classifier, MAX_PIXELS)
    assert report["num_samples"] == 2 and report["no_face"] == 0 and report["rejected_files"] == []
    assert report["face_found_rate"] == 1.0 and report["accuracy_no_face"] is None
    expected = random_classifier.predict(np.stack([crop_face(image, faces[0].box, random_classifier.rule)
                                                   for _, image, faces in photos]))
    matrix = [[0, 0], [0, 0]]
    for row, column in enumerate(expected.argmax(1)):  # photos[0] is with_mask (row 0), photos[1] without_mask
        matrix[row][int(column)] += 1
    assert report["confusion_matrix"] == matrix


def test_evaluate_folder_refuses_classes_the_model_does_not_know(tmp_path, detector, constant_classifier):
    root = write_dataset(tmp_path / "eval", per_class=1, labels=("with_mask", "mask_incorrect"))
    with pytest.raises(StoreError, match="mask_incorrect") as error:
        evaluate_folder(root, detector, constant_classifier, MAX_PIXELS)
    assert "with_mask, without_mask" in str(error.value)  # and it says which classes the model has


def test_evaluate_folder_with_nothing_usable(tmp_path, detector, constant_classifier):
    with pytest.raises(StoreError, match="not found"):
        evaluate_folder(tmp_path / "missing", detector, constant_classifier, MAX_PIXELS)
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match="No images found"):
        evaluate_folder(tmp_path / "empty", detector, constant_classifier, MAX_PIXELS)
    (tmp_path / "bad" / "with_mask").mkdir(parents=True)
    (tmp_path / "bad" / "with_mask" / "a.jpg").write_bytes(b"junk")
    with pytest.raises(StoreError, match="could be read"):
        evaluate_folder(tmp_path / "bad", detector, constant_classifier, MAX_PIXELS)
