"""What a maskdet model file promises, read by training, serving and the bundle alike: its input (preprocessing),
the crop rule, the label of faces below the threshold, the metadata it carries and the operators it may use.
No torch."""

from dataclasses import asdict, dataclass

INPUT_SIZES = (32, 512)  # the sides, in pixels, of the square crops a maskdet model may take
CROP_MARGINS = (1.0, 3.0)  # the crop's side as a multiple of the face box's longer side
UNCERTAIN = "uncertain"  # what predictions below the threshold are called
OPSET = 17
INPUT_NAME = "images"
# The operators maskdet's exporter and int8 quantiser write. None makes a tensor whose size comes from data, so shape
# inference bounds every tensor before onnxruntime allocates one (ConstantOfShape, Expand or Tile would not: onnxruntime
# folds a ConstantOfShape when it builds the session, and a 300-byte file can ask for 100 GB that way).
MODEL_OPS = {"Add", "Cast", "Clip", "Constant", "Conv", "DequantizeLinear", "Div", "Flatten", "Gemm",
             "GlobalAveragePool", "Identity", "QuantizeLinear", "Softmax", "Sub", "Transpose"}
MAX_TENSOR_ELEMENTS = 16 * 2**20  # in any tensor of a model, per face crop; maskdet's largest at 512 pixels: 6 million
MAX_WEIGHT_ELEMENTS = 16 * 2**20  # weights of a model in all; maskdet's models hold 2.2 million
MAX_MACS_PER_CROP = 4 * 10**9  # multiply-adds a face crop; maskdet's models: 0.15 billion at 160 px, 1.6 at 512


@dataclass(frozen=True)
class Preprocess:
    """The input contract of a maskdet model, stored with it and in the ONNX metadata."""

    input_size: int = 160
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    color_order: str = "RGB"
    layout: str = "NHWC"
    dtype: str = "uint8"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class CropRule:
    """A square crop around the face box, `margin` times its longer side, kept inside the image."""

    margin: float = 1.25
    size: int = 160
