"""Fine-tuning MTCNN's ONet (FINE_TUNED) on masked faces: training crops cut from masks-small's bare photos, its
pasted-mask photos and masks drawn by maskdet's synthesis, a validation part held out by near-duplicate group, the
whole cascade measured on it before and after, and the networks exported to ONNX as maskdet.vision.mtcnn does.

Conventions are the cascade's (maskdet/bundle/mtcnn_cascade.py, as facenet-pytorch's detect_face): a network sees
RGB float32 NCHW, (x - 127.5) * 0.0078125, cut from the image as rows y1 - 1 .. y2 and columns x1 - 1 .. x2 of a
box x1, y1, x2, y2 and resized (area) to its side; its box regression is in units of that box's size (x2 - x1 + 1)
and ONet's landmarks are the five x's then the five y's, from x1 - 1, y1 - 1 in the same units (see crop_box)."""

import io
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
from facenet_pytorch.models.mtcnn import ONet, RNet
from torch import nn

from maskdet.bundle.mtcnn_cascade import MIN_FACE_SIDE, Cascade, DetectorSettings, find_faces, pad_border, session
from maskdet.core.imageio import decode_image
from maskdet.data.importer import perceptual_hash
from maskdet.vision.faces import FaceDetector, box_iou
from maskdet.vision.mtcnn import facenet_networks, nms, resize_area
from maskdet.vision.near_duplicates import NEAR_DUPLICATE_BITS, hash_bytes, hash_distances
from maskdet.vision.synth import MASK_STYLES, draw_mask

NETS = ("pnet", "rnet", "onet")  # in the order of maskdet.bundle.mtcnn_cascade.NETWORK_FILES
# PNet stays facenet's: on the validation part (seed 0) its proposals hold 547 of the 554 masked faces (all 137 pasted-
# mask ones) and all 280 bare ones; RNet and ONet then lose 15 more masked faces (detector.json: stages_before).
# RNet stays facenet's too: fine-tuned along with ONet (the first shipped set), it lost faces on that validation part
# (small masked ones held after it 0.982 -> 0.964, small bare ones 1.000 -> 0.993) while ONet gained (drawn 0.957 ->
# 0.986); docs/performance.md (Real scenes) has how each set then scored.
FINE_TUNED = ("onet",)
SIDES = {"rnet": 24, "onet": 48}  # their input sides
OUTPUTS = {"rnet": ["regression", "probability"], "onet": ["regression", "landmarks", "probability"]}  # as exported
LOSS_WEIGHTS = {"rnet": (1.0, 0.5, 0.0), "onet": (1.0, 0.5, 1.0)}  # MTCNN's: face/non-face, box, landmarks
MAX_PIXELS = 50_000_000  # a photo larger than this is not read
SEARCH = DetectorSettings()  # validation photos are searched as `maskdet predict` searches a photo
FACE, NOT_FACE, PART = 1, 0, -1  # sample labels: a part face trains box regression only
POSITIVE_IOU, PART_IOU, NEGATIVE_IOU = 0.65, 0.4, 0.3  # the MTCNN paper's classes of a crop by IoU with the face
FOUND_IOU = 0.4  # a face counts as found by a detection this close to its known box
CANVAS_FACE = 96  # a face's longer side, at most, on the canvas its training crops are cut from (ONet sees 48)
CANVAS_PAD = 0.25  # the canvas' border of the photo's mean colour, a fraction of its longer side (as the search pads)
SMALL_FACES = (12, 40)  # training crops made small: as if the face's longer side were this many pixels
VALIDATION_SMALL_FACES = (20, 40)  # the same in validation (the cascade looks for faces of 20 pixels and more)
SOURCES = ("bare", "pasted", "drawn")  # where a training face comes from
RULES = {"positive_iou": POSITIVE_IOU, "part_iou": PART_IOU, "negative_iou": NEGATIVE_IOU, "found_iou": FOUND_IOU,
         "canvas_face": CANVAS_FACE, "canvas_pad": CANVAS_PAD, "small_faces": SMALL_FACES,
         "validation_small_faces": VALIDATION_SMALL_FACES, "loss_weights": LOSS_WEIGHTS, "styles": list(MASK_STYLES)}
Track = Callable[[Iterable, str, int], Iterable]  # wraps an iterable of a known length with progress


def untracked(items: Iterable, what: str, total: int) -> Iterable:
    return items


@dataclass(frozen=True)
class FinetuneSettings:
    """How a run samples and trains; the defaults are scripts/finetune_mtcnn.py's."""

    seed: int = 0
    max_photos: int | None = None  # None: all; else whole pasted-mask pairs, chosen by seed
    validation_fraction: float = 0.2  # of the photos, whole near-duplicate groups
    drawn_per_face: int = 2  # masks drawn on each bare training face, the styles in turn
    positives: int = 3  # crops per face with IoU >= POSITIVE_IOU
    parts: int = 2  # crops per face with IoU in [PART_IOU, POSITIVE_IOU)
    negatives: int = 6  # crops per face with IoU < NEGATIVE_IOU: near it, PNet's proposals, anywhere (a third each)
    small_fraction: float = 0.3  # of the crops, made as small faces would look (SMALL_FACES)
    epochs: int = 3  # an ONet epoch: about a minute on two quiet cores (RNet: a third of that)
    batch_size: int = 128
    learning_rate: float = 3e-4  # Adam, cosine decay to 0

    @classmethod
    def tiny(cls, seed: int = 0) -> "FinetuneSettings":
        """A handful of photos and one short epoch: the whole run in seconds (tests)."""
        return cls(seed=seed, max_photos=12, validation_fraction=0.35, drawn_per_face=1, epochs=1)


# ---- the photos: files, known faces, near-duplicate groups, the validation part ----------------------------------

@dataclass
class Photo:
    """One masks-small photo and the face it is known to hold, in the pixels of its working copy (load_photo)."""

    path: Path
    masked: bool  # in with_mask/: a pasted mask
    size: tuple[int, int]  # the file's height and width
    phash: str
    box: np.ndarray | None = None  # x1, y1, x2, y2, the cascade's convention; None: no face known
    landmarks: np.ndarray | None = None  # (5, 2) MTCNN's order; None: unknown
    box_from: str = "none"  # "detector", "twin" (the unmasked twin's) or "none"
    others: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))  # other faces the detector found
    group: int = -1  # near-duplicate group


def load_photo(path: Path) -> np.ndarray:
    """A photo as RGB uint8, shrunk so that its longer side is at most SEARCH.search_side (the search's copy)."""
    return working_copy(decode_image(path.read_bytes(), MAX_PIXELS))


def working_copy(image: np.ndarray) -> np.ndarray:
    scale = min(1.0, SEARCH.search_side / max(image.shape[:2]))
    if scale == 1.0:
        return image
    return resize_area(image, max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))


def twin_path(path: Path) -> Path | None:
    """The unmasked photo a pasted-mask photo was made from: with_mask/N-with-mask.jpg's is without_mask/N.jpg."""
    if path.parent.name != "with_mask" or not path.stem.endswith("-with-mask"):
        return None
    return path.parent.parent / "without_mask" / f"{path.stem.removesuffix('-with-mask')}{path.suffix}"


def photo_files(data: Path, max_photos: int | None, seed: int) -> list[Path]:
    """masks-small's photos; with max_photos, that many photos in whole pasted-mask pairs, chosen by seed."""
    files = sorted((data / "with_mask").glob("*.jpg")) + sorted((data / "without_mask").glob("*.jpg"))
    if max_photos is None:
        return files
    pairs = [(path, twin) for path in files if (twin := twin_path(path)) and twin.exists()]
    chosen = np.random.default_rng(seed).permutation(len(pairs))[:max_photos // 2]
    return sorted(path for index in chosen for path in pairs[index])


def near_duplicate_groups(photos: list[Photo]) -> np.ndarray:
    """Each photo's group: photos within NEAR_DUPLICATE_BITS of each other (maskdet's rule on the perceptual hash of
    the top of the photo, followed transitively) and a pasted-mask photo with its twin share one."""
    parent = list(range(len(photos)))

    def root(index: int) -> int:
        while parent[index] != index:
            parent[index] = parent[parent[index]]
            index = parent[index]
        return index

    hashes = hash_bytes(*(photo.phash for photo in photos))
    index_of = {photo.path: index for index, photo in enumerate(photos)}
    for index, photo in enumerate(photos):
        near = np.flatnonzero(hash_distances(hashes, photo.phash) <= NEAR_DUPLICATE_BITS).tolist()
        twin = index_of.get(twin_path(photo.path))
        for other in near + ([twin] if twin is not None else []):
            parent[root(other)] = root(index)
    return np.array([root(index) for index in range(len(photos))])


def validation_part(groups: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Which photos are held out (bool): whole groups in a seeded order until `fraction` of the photos."""
    held = np.zeros(len(groups), bool)
    for group in np.random.default_rng(seed).permutation(np.unique(groups)):
        if held.sum() >= fraction * len(groups):
            break
        held[groups == group] = True
    return held


def survey(files: list[Path], detector: FaceDetector, track: Track = untracked) -> list[Photo]:
    """The photos with their known faces and groups. A bare photo's face is the largest the detector finds, with its
    landmarks; a pasted-mask photo's too, or where it finds none, its twin's when the twin is the same size (whose
    landmarks it takes: the detector's would be guessed under the mask)."""
    photos = []
    for path in track(files, "faces", len(files)):
        image = decode_image(path.read_bytes(), MAX_PIXELS)
        photo = Photo(path, path.parent.name == "with_mask", image.shape[:2], perceptual_hash(image))
        faces = detector.detect([working_copy(image)])[0]
        if faces:
            photo.box, photo.box_from = np.array(faces[0].box), "detector"
            photo.landmarks = None if photo.masked else np.array(faces[0].landmarks)  # under a mask: guessed
            photo.others = np.array([face.box for face in faces[1:]]).reshape(-1, 4)
        photos.append(photo)
    by_path = {photo.path: photo for photo in photos}
    for photo in photos:
        twin = by_path.get(twin_path(photo.path))
        if twin is None or twin.size != photo.size:
            continue
        photo.landmarks = twin.landmarks  # pixel-aligned with the bare face
        if photo.box is None and twin.box is not None:
            photo.box, photo.box_from, photo.others = twin.box, "twin", twin.others
    for photo, group in zip(photos, near_duplicate_groups(photos)):
        photo.group = int(group)
    return photos


# ---- the training samples -------------------------------------------------------------------------------------

Square = tuple[int, int, int]  # x0, y0, side: the pixels [y0, y0 + side) x [x0, x0 + side) of an image


def crop_box(square: Square) -> np.ndarray:
    """The box whose crop in the cascade is exactly the square's pixels."""
    x0, y0, side = square
    return np.array([x0 + 1, y0 + 1, x0 + side, y0 + side], np.float64)


def box_targets(square: Square, box) -> np.ndarray:
    """The regression that takes the square's crop box to `box` (the cascade's regress undoes it)."""
    return ((np.asarray(box, np.float64) - crop_box(square)) / square[2]).astype(np.float32)


def landmark_targets(square: Square, landmarks) -> np.ndarray:
    """ONet's landmark outputs for the square: the five x's then the five y's, in units of its side."""
    relative = (np.asarray(landmarks, np.float64) - square[:2]) / square[2]
    return np.concatenate([relative[:, 0], relative[:, 1]]).astype(np.float32)


def label_of(square: Square, box, faces: np.ndarray) -> int | None:
    """FACE, PART or NOT_FACE by the square's IoU with the face (and with every face, for NOT_FACE); None between."""
    iou = box_iou(crop_box(square), box)
    if iou >= POSITIVE_IOU:
        return FACE
    if iou >= PART_IOU:
        return PART
    if max([iou] + [box_iou(crop_box(square), other) for other in faces]) < NEGATIVE_IOU:
        return NOT_FACE
    return None


def jittered(box, shift: float, rng: np.random.Generator) -> Square:
    """A square of 0.8 of the box's shorter to 1.25 of its longer side, its centre moved by up to `shift` of the
    box's size (the MTCNN paper's sampling)."""
    width, height = box[2] - box[0], box[3] - box[1]
    side = max(round(rng.uniform(0.8 * min(width, height), 1.25 * max(width, height))), MIN_FACE_SIDE)
    cx = (box[0] + box[2]) / 2 + rng.uniform(-shift, shift) * width
    cy = (box[1] + box[3]) / 2 + rng.uniform(-shift, shift) * height
    return round(cx - side / 2), round(cy - side / 2), side


def inside(square: Square, shape: tuple[int, ...]) -> bool:
    x0, y0, side = square
    return x0 >= 0 and y0 >= 0 and x0 + side <= shape[1] and y0 + side <= shape[0]


def face_squares(box, faces: np.ndarray, shape: tuple[int, ...], wanted: dict[int, int],
                 rng: np.random.Generator) -> list[tuple[Square, int]]:
    """Squares inside an image of `shape` jittered around the face, up to wanted[label] of each label; non-faces
    are those near the face (the shift reaches beyond it) that overlap no face."""
    shifts = {FACE: 0.2, PART: 0.45, NOT_FACE: 1.0}
    found = []
    for label, count in wanted.items():
        got = 0
        for _ in range(40 * count):
            if got == count:
                break
            square = jittered(box, shifts[label], rng)
            if inside(square, shape) and label_of(square, box, faces) == label:
                found.append((square, label))
                got += 1
    return found


def random_negatives(box, faces: np.ndarray, shape: tuple[int, ...], count: int,
                     rng: np.random.Generator) -> list[tuple[Square, int]]:
    """Squares anywhere in the image, 12 pixels to half its shorter side, that overlap no face."""
    found = []
    largest = max(MIN_FACE_SIDE + 1, min(shape[:2]) // 2)
    for _ in range(40 * count):
        if len(found) == count:
            break
        side = int(rng.integers(MIN_FACE_SIDE, largest))
        if side > min(shape[:2]):
            continue
        square = (int(rng.integers(0, shape[1] - side + 1)), int(rng.integers(0, shape[0] - side + 1)), side)
        if label_of(square, box, faces) == NOT_FACE:
            found.append((square, NOT_FACE))
    return found


def proposal_negatives(cascade: Cascade, image: np.ndarray, box, faces: np.ndarray, count: int,
                       rng: np.random.Generator) -> list[tuple[Square, int]]:
    """Hard non-faces: PNet's proposals on the image that overlap no face, `count` of them at random."""
    proposals = cascade._proposals((image.astype(np.float32) - 127.5) * 0.0078125)  # the cascade's first stage
    squares = [(int(x1) - 1, int(y1) - 1, int(x2) - int(x1) + 1) for x1, y1, x2, _, _ in proposals]
    squares = [s for s in squares if s[2] >= MIN_FACE_SIDE and inside(s, image.shape)
               and label_of(s, box, faces) == NOT_FACE]
    return [(squares[index], NOT_FACE) for index in rng.permutation(len(squares))[:count]]


@dataclass
class Canvas:
    """A face's photo scaled so that the face is at most CANVAS_FACE pixels, a mask drawn on it or not, and padded."""

    image: np.ndarray
    box: np.ndarray
    landmarks: np.ndarray | None
    others: np.ndarray


def face_canvas(image: np.ndarray, photo: Photo, style: str | None, rng: np.random.Generator) -> Canvas:
    """The photo scaled so that its face's longer side is at most CANVAS_FACE, a mask of `style` drawn on it from the
    landmarks (None: none), and padded by CANVAS_PAD of its longer side in its mean colour."""
    height, width = image.shape[:2]
    scale = min(1.0, CANVAS_FACE / max(photo.box[2] - photo.box[0], photo.box[3] - photo.box[1]))
    if scale < 1:
        image = resize_area(image, max(1, round(width * scale)), max(1, round(height * scale)))
    factors = np.array([image.shape[1] / width, image.shape[0] / height])
    landmarks = None if photo.landmarks is None else photo.landmarks * factors
    if style is not None:
        image = draw_mask(image, landmarks, style, rng)
    pad = round(CANVAS_PAD * max(image.shape[:2]))
    return Canvas(pad_border(image, pad), photo.box * np.tile(factors, 2) + pad,
                  None if landmarks is None else landmarks + pad, photo.others * np.tile(factors, 2) + pad)


@dataclass
class Samples:
    """Training crops at RNet's and ONet's sides, with their labels and targets."""

    crops: dict[int, np.ndarray]  # side: (N, side, side, 3) uint8 RGB
    labels: np.ndarray  # (N,) FACE, NOT_FACE or PART
    boxes: np.ndarray  # (N, 4) box regression targets; NaN for non-faces
    landmarks: np.ndarray  # (N, 10) landmark targets; NaN where unknown
    sources: np.ndarray  # (N,) index into SOURCES of the face the crop was cut around
    small: np.ndarray  # (N,) bool: made as a small face would look

    def counts(self) -> dict:
        names = {FACE: "positives", PART: "parts", NOT_FACE: "negatives"}
        counts = {name: {source: int(((self.labels == label) & (self.sources == index)).sum())
                         for index, source in enumerate(SOURCES)} for label, name in names.items()}
        return {**counts, "small": int(self.small.sum()),
                "landmarks": int(np.isfinite(self.landmarks[:, 0]).sum()), "total": len(self.labels)}


def canvas_samples(canvas: Canvas, cascade: Cascade, settings: FinetuneSettings, rng: np.random.Generator) -> list:
    """(crops by side, label, box targets, landmark targets, small) of one face's canvas."""
    box, faces, image = canvas.box, canvas.others, canvas.image
    near, proposals = settings.negatives // 3, settings.negatives // 3
    squares = (face_squares(box, faces, image.shape, {FACE: settings.positives, PART: settings.parts,
                                                      NOT_FACE: near}, rng)
               + proposal_negatives(cascade, image, box, faces, proposals, rng))
    squares += random_negatives(box, faces, image.shape, settings.negatives - near - proposals, rng)
    face_side = max(box[2] - box[0], box[3] - box[1])
    samples = []
    for square, label in squares:
        x0, y0, side = square
        patch = image[y0:y0 + side, x0:x0 + side]
        small = rng.random() < settings.small_fraction
        if small:
            shrunk = max(2, round(side * rng.uniform(*SMALL_FACES) / face_side))
            patch = resize_area(patch, shrunk, shrunk) if shrunk < side else patch
        crops = {size: resize_area(patch, size, size) for size in (SIDES["rnet"], SIDES["onet"])}
        targets = box_targets(square, box) if label != NOT_FACE else np.full(4, np.nan, np.float32)
        points = (landmark_targets(square, canvas.landmarks) if label == FACE and canvas.landmarks is not None
                  else np.full(10, np.nan, np.float32))
        samples.append((crops, label, targets, points, small))
    return samples


def training_samples(photos: list[Photo], cascade: Cascade, settings: FinetuneSettings,
                     track: Track = untracked) -> Samples:
    """Crops around each training face: the bare photos', the pasted-mask photos', and the bare ones with masks
    drawn in every style in turn (settings.drawn_per_face each); `cascade` gives PNet's proposals."""
    styles = list(MASK_STYLES)
    rows, sources, drawn = [], [], 0
    for index, photo in enumerate(track(photos, "samples", len(photos))):
        if photo.box is None:
            continue
        image = load_photo(photo.path)
        variants = [(None, SOURCES.index("pasted" if photo.masked else "bare"))]
        if not photo.masked and photo.landmarks is not None:
            variants += [(styles[(drawn + k) % len(styles)], SOURCES.index("drawn"))
                         for k in range(settings.drawn_per_face)]
            drawn += settings.drawn_per_face
        for variant, (style, source) in enumerate(variants):
            rng = np.random.default_rng([settings.seed, index, variant])
            made = canvas_samples(face_canvas(image, photo, style, rng), cascade, settings, rng)
            rows += made
            sources += [source] * len(made)
    return Samples({size: np.stack([row[0][size] for row in rows]) for size in (SIDES["rnet"], SIDES["onet"])},
                   np.array([row[1] for row in rows]), np.stack([row[2] for row in rows]),
                   np.stack([row[3] for row in rows]), np.array(sources), np.array([row[4] for row in rows]))


# ---- fine-tuning and export -----------------------------------------------------------------------------------

def pretrained(name: str) -> nn.Module:
    """facenet-pytorch's RNet or ONet with its pretrained weights."""
    return {"rnet": RNet, "onet": ONet}[name]()


def network_inputs(crops: np.ndarray) -> torch.Tensor:
    """uint8 RGB NHWC crops as the cascade feeds them: float NCHW, (x - 127.5) * 0.0078125."""
    return (torch.from_numpy(crops).permute(0, 3, 1, 2).float() - 127.5) * 0.0078125


def losses(name: str, outputs: tuple, labels: torch.Tensor, boxes: torch.Tensor,
           landmarks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """MTCNN's three losses of a batch: cross-entropy on faces and non-faces, mean squared error of the box
    regression on faces and part faces, and of the landmarks (ONet) on faces whose landmarks are known."""
    probability = outputs[-1]
    classified = labels != PART
    face = nn.functional.nll_loss(torch.log(probability[classified].clamp_min(1e-7)), labels[classified])
    boxed = labels != NOT_FACE
    box = nn.functional.mse_loss(outputs[0][boxed], boxes[boxed]) if boxed.any() else probability.new_zeros(())
    pointed = torch.isfinite(landmarks[:, 0]) & (labels == FACE)
    points = (nn.functional.mse_loss(outputs[1][pointed], landmarks[pointed]) if name == "onet" and pointed.any()
              else probability.new_zeros(()))
    return face, box, points


def fine_tune(name: str, samples: Samples, settings: FinetuneSettings,
              track: Track = untracked) -> tuple[nn.Module, dict]:
    """facenet's pretrained network trained further on the samples (Adam, cosine decay); with what it did."""
    torch.manual_seed(settings.seed)
    net = pretrained(name).train()
    crops = samples.crops[SIDES[name]]
    labels, boxes = torch.from_numpy(samples.labels), torch.from_numpy(samples.boxes)
    landmarks = torch.from_numpy(samples.landmarks)
    steps_per_epoch = -(-len(labels) // settings.batch_size)
    optimiser = torch.optim.Adam(net.parameters(), lr=settings.learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, settings.epochs * steps_per_epoch)
    rng = np.random.default_rng([settings.seed, NETS.index(name)])
    weights, started, history = LOSS_WEIGHTS[name], time.monotonic(), []
    for epoch in range(settings.epochs):
        order = rng.permutation(len(labels))
        sums = np.zeros(3)
        for step in track(range(steps_per_epoch), f"{name} epoch {epoch + 1}/{settings.epochs}", steps_per_epoch):
            batch = np.sort(order[step * settings.batch_size:(step + 1) * settings.batch_size])
            rows = torch.from_numpy(batch)
            parts = losses(name, net(network_inputs(crops[batch])), labels[rows], boxes[rows], landmarks[rows])
            loss = sum(weight * part for weight, part in zip(weights, parts))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            sums += [part.item() for part in parts]
        history.append(dict(zip(("face", "box", "landmarks"), (sums / steps_per_epoch).round(5).tolist())))
    return net.eval(), {"epochs": settings.epochs, "steps": settings.epochs * steps_per_epoch,
                        "loss_by_epoch": history, "seconds": round(time.monotonic() - started, 1)}


def export_onnx(net: nn.Module, name: str) -> bytes:
    """The network in ONNX as maskdet.vision.mtcnn.facenet_networks exports facenet's: input `image`, the same output
    names, opset 17, the same dynamic axes."""
    buffer = io.BytesIO()
    outputs = OUTPUTS[name]
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        torch.onnx.export(net.eval(), (torch.zeros(1, 3, SIDES[name], SIDES[name]),), buffer, input_names=["image"],
                          output_names=outputs, opset_version=17, dynamo=False,
                          dynamic_axes={"image": {0: "n", 2: "h", 3: "w"}, **{o: {0: "n"} for o in outputs}})
    return buffer.getvalue()


# ---- measuring on the validation part -------------------------------------------------------------------------

def cascade_of(models: tuple[bytes, bytes, bytes]) -> Cascade:
    """The cascade on three ONNX networks, as maskdet.vision.mtcnn.OnnxMTCNN builds it (min face 20, thresholds
    0.6, 0.7, 0.7, OpenCV's resize and NMS)."""
    return Cascade(*(session(model) for model in models), SEARCH.min_face_size, SEARCH.thresholds, resize=resize_area,
                   iou_nms=nms)


ValidationSets = dict[str, list[tuple[np.ndarray, np.ndarray]]]  # name: images, each with its face's known box


def small_copy(image: np.ndarray, box: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The image shrunk so that the face's longer side is VALIDATION_SMALL_FACES pixels, padded by twice that in its
    mean colour; with the face's box there."""
    scale = rng.uniform(*VALIDATION_SMALL_FACES) / max(box[2] - box[0], box[3] - box[1])
    height, width = image.shape[:2]
    small = resize_area(image, max(1, round(width * scale)), max(1, round(height * scale)))
    pad = round(2 * VALIDATION_SMALL_FACES[1])
    factors = np.tile([small.shape[1] / width, small.shape[0] / height], 2)
    return pad_border(small, pad), box * factors + pad


def validation_sets(photos: list[Photo], seed: int, track: Track = untracked) -> ValidationSets:
    """The held-out faces to measure on: pasted-mask photos (by where their box comes from), bare photos with a mask
    drawn (the styles in turn), bare photos, and all of them shrunk to small faces (masked and bare)."""
    sets = {name: [] for name in ("pasted_detector_box", "pasted_twin_box", "drawn", "bare", "small_masked",
                                  "small_bare")}
    styles = list(MASK_STYLES)
    for index, photo in enumerate(track(photos, "validation", len(photos))):
        if photo.box is None:
            continue
        rng = np.random.default_rng([seed, index, 1])
        image = load_photo(photo.path)
        if photo.masked:
            sets[f"pasted_{photo.box_from}_box"].append((image, photo.box))
            sets["small_masked"].append(small_copy(image, photo.box, rng))
            continue
        sets["bare"].append((image, photo.box))
        sets["small_bare"].append(small_copy(image, photo.box, rng))
        if photo.landmarks is not None:
            drawn = draw_mask(image, photo.landmarks, styles[len(sets["drawn"]) % len(styles)], rng)
            sets["drawn"].append((drawn, photo.box))
            sets["small_masked"].append(small_copy(drawn, photo.box, rng))
    return sets


def measure(cascade: Cascade, sets: ValidationSets, track: Track = untracked) -> dict[str, dict]:
    """Per set: faces, the fraction found (a detection with IoU >= FOUND_IOU with the known box; photos searched
    as `maskdet predict` does) and false faces per photo (every other detection)."""
    figures = {}
    for name, items in sets.items():
        found = false = 0
        for image, box in track(items, f"measure {name}", len(items)):
            faces = find_faces(cascade, image, SEARCH.search_side, SEARCH.search_side, SEARCH.pad_fraction,
                               SEARCH.min_probability)
            hit = max([box_iou(face[0], box) for face in faces], default=0.0) >= FOUND_IOU
            found += hit
            false += len(faces) - hit
        figures[name] = {"faces": len(items), "found": round(found / len(items), 4) if items else None,
                         "false_per_photo": round(false / len(items), 4) if items else None}
    return figures


def stage_recall(cascade: Cascade, sets: ValidationSets, track: Track = untracked) -> dict[str, dict]:
    """Per set, the fraction of faces still held by a box with IoU >= FOUND_IOU after PNet (its proposals), RNet and
    ONet, each photo searched once on its padded copy (as the search's fallback pads it): where faces are lost."""
    figures = {}
    for name, items in sets.items():
        held = np.zeros(3)
        for image, box in track(items, f"stages {name}", len(items)):
            pad = round(max(image.shape[:2]) * SEARCH.pad_fraction)
            copy = pad_border(image, pad)
            scale = min(1.0, SEARCH.search_side / max(copy.shape[:2]))
            if scale < 1:
                copy = resize_area(copy, max(1, round(copy.shape[1] * scale)), max(1, round(copy.shape[0] * scale)))
            known = (np.asarray(box) + pad) * scale
            normalised = (copy.astype(np.float32) - 127.5) * 0.0078125
            boxes = cascade._proposals(normalised)  # the cascade's stages one at a time
            for stage in range(3):
                if stage == 1 and len(boxes):
                    boxes = cascade._refine(normalised, boxes)
                elif stage == 2 and len(boxes):
                    boxes = cascade._final(normalised, boxes[:, :4], cascade.thresholds[2])[0]
                if not any(box_iou(candidate[:4], known) >= FOUND_IOU for candidate in boxes):
                    break
                held[stage] += 1
        figures[name] = dict(zip(("pnet", "rnet", "onet"), (held / len(items)).round(4).tolist() if items else
                                 [None] * 3))
    return figures


# ---- the whole run --------------------------------------------------------------------------------------------

@dataclass
class Finetuned:
    models: dict[str, bytes]  # network name: ONNX bytes, every network (facenet's own where not fine-tuned)
    report: dict  # how they were made and what they do on the validation part


def finetune(data: Path, settings: FinetuneSettings, track: Track = untracked) -> Finetuned:
    """Survey masks-small, hold out the validation part, measure, make the samples, fine-tune, measure again."""
    started, seconds = time.monotonic(), {}

    def lap(what: str) -> None:
        seconds[what] = round(time.monotonic() - started - sum(seconds.values()), 1)

    photos = survey(photo_files(data, settings.max_photos, settings.seed), FaceDetector(), track)
    held = validation_part(np.array([photo.group for photo in photos]), settings.validation_fraction, settings.seed)
    training = [photo for photo, out in zip(photos, held) if not out]
    lap("survey")
    sets = validation_sets([photo for photo, out in zip(photos, held) if out], settings.seed, track)
    original = facenet_networks()
    before = cascade_of(original)
    figures_before, stages_before = measure(before, sets, track), stage_recall(before, sets, track)
    lap("measure_before")
    samples = training_samples(training, before, settings, track)
    lap("samples")
    models, training_runs = dict(zip(NETS, original)), {}
    for name in FINE_TUNED:
        net, training_runs[name] = fine_tune(name, samples, settings, track)
        models[name] = export_onnx(net, name)
    lap("fine_tune")
    after = cascade_of(tuple(models[name] for name in NETS))
    figures_after, stages_after = measure(after, sets, track), stage_recall(after, sets, track)
    lap("measure_after")
    report = {
        "settings": asdict(settings), "rules": RULES, "search": SEARCH.to_dict(),
        "versions": {"torch": torch.__version__, "facenet_pytorch": version("facenet-pytorch")},
        "data": data_counts(photos, held, samples),
        "fine_tuned": list(FINE_TUNED), "training": training_runs,
        "validation": {"before": figures_before, "after": figures_after,
                       "stages_before": stages_before, "stages_after": stages_after},
        "seconds": {**seconds, "total": round(time.monotonic() - started, 1)},
    }
    return Finetuned(models, report)


def data_counts(photos: list[Photo], held: np.ndarray, samples: Samples) -> dict:
    """Photos by part and kind, where their boxes came from, and the samples."""
    def part(selected: list[Photo]) -> dict:
        return {"photos": len(selected), "bare": sum(not p.masked for p in selected),
                "pasted": sum(p.masked for p in selected),
                "box_from": {source: sum(p.box_from == source for p in selected)
                             for source in ("detector", "twin", "none")},
                "groups": len({p.group for p in selected})}

    by_path = {p.path: p for p in photos}
    twins = [(p, by_path.get(twin_path(p.path))) for p in photos if p.masked and p.box_from == "detector"]
    agreeing = [box_iou(p.box, twin.box) >= FOUND_IOU for p, twin in twins
                if twin is not None and twin.size == p.size and twin.box is not None]
    return {"training": part([p for p, out in zip(photos, held) if not out]),
            "validation": part([p for p, out in zip(photos, held) if out]),
            "pasted_detector_box_agrees_with_twin": {"pairs": len(agreeing), "iou_0.4": int(sum(agreeing))},
            "samples": samples.counts()}
