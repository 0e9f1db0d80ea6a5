"""Classify face photos with a maskdet ONNX model. Needs only onnxruntime, numpy and Pillow.

    python predict_onnx.py model.onnx face1.jpg [face2.jpg ...]

Each image should show one face filling most of the frame (maskdet's own tools find and crop faces
with MTCNN first). The image is cut to its centre square and resized to the model's input size; the
model normalises internally and returns one probability per label.
"""

import json
import sys

import numpy as np
import onnxruntime as ort
from PIL import Image


def load(path):
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    return session, json.loads(meta["labels"]), json.loads(meta["preprocess"])["input_size"]


def face_crop(path, size):
    image = Image.open(path).convert("RGB")
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    return np.asarray(image.crop((left, top, left + side, top + side)).resize((size, size), Image.BILINEAR))


def main(model_path, image_paths):
    session, labels, size = load(model_path)
    crops = np.stack([face_crop(path, size) for path in image_paths])
    for path, probabilities in zip(image_paths, session.run(None, {"images": crops})[0]):
        best = int(probabilities.argmax())
        scores = ", ".join(f"{label} {p:.3f}" for label, p in zip(labels, probabilities))
        print(f"{path}: {labels[best]} ({scores})")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2:])
