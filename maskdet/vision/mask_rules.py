"""Synthetic-mask rules (the `synthetic_masks` training setting): which class's faces get a drawn mask (or their masked
twin's real mask, moved), worn right or wrongly, and which class the drawn faces train as. One list of rules drives
the config, the CLI and the Train page."""

from dataclasses import dataclass, field

from maskdet.core.classes import WITH_MASK, WITHOUT_MASK, WORN_WRONG, class_of_meaning
from maskdet.vision.synth import MASK_STYLES, WRONG_PLACEMENTS

WEARINGS = {  # a rule's `worn`: the placements it draws, and what the Train page calls it
    "right": (("right",), "worn right"),
    "wrong": (WRONG_PLACEMENTS, "worn wrongly (under the nose, on the chin, on the neck, hanging from one ear)"),
}
MASKS_FROM = {  # a rule's `mask_from`: where its masks come from, the Train page's short name and its words
    "drawing": ("Drawn", "drawn from the face's landmarks, in the rule's styles"),
    "twin": ("Twin's real mask", "the real mask of the face's masked twin (the same photo in the with_mask class), "
                                 "moved"),
}
DEFAULT_PROBABILITY = 0.25
TWIN_PROBABILITY = 1.0  # each round of views moves every twin's mask once: a twin's own masked photo trains as
# with_mask in every round, so the real masks' look is as common worn wrongly as worn right and only where the mask
# sits tells the two classes apart (docs/performance.md, "Masks worn wrongly")


@dataclass
class MaskRule:
    """Faces of `source` with landmarks get, for each augmented view, a `probability` chance of one extra view with a
    mask drawn (worn right or wrongly, in one of `styles`), trained as `target`."""

    source: str
    target: str
    worn: str = "right"
    probability: float = DEFAULT_PROBABILITY
    styles: list[str] = field(default_factory=lambda: list(MASK_STYLES))
    mask_from: str = "drawing"

    @property
    def placements(self) -> tuple[str, ...]:
        return WEARINGS[self.worn][0]

    def text(self) -> str:
        twin = ", the twin's real mask" if self.mask_from == "twin" else ""
        return f"{self.source} → {self.target}, mask {WEARINGS[self.worn][1].split(' (')[0]}{twin}"

    @classmethod
    def from_dict(cls, data, number: int) -> "MaskRule":
        """A rule from its JSON object; anything else is refused with a sentence naming rule `number` (1 first)."""
        where = f"synthetic_masks rule {number}"
        if not isinstance(data, dict):
            raise ValueError(f"{where} must be an object with source, target, worn, probability, styles and "
                             "mask_from.")
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"Unknown setting(s) in {where}: {', '.join(sorted(unknown))}. "
                             f"Known: {', '.join(cls.__dataclass_fields__)}.")
        if not {"source", "target"} <= set(data):
            raise ValueError(f"{where} needs a source class (whose faces get the drawn mask) and a target class "
                             "(what the drawn faces train as).")
        rule = cls(**data)
        for name in ("source", "target"):
            if not isinstance(getattr(rule, name), str) or not getattr(rule, name).strip():
                raise ValueError(f"{where}: {name} must be a class name.")
        if rule.source == rule.target:
            raise ValueError(f"{where}: the source and target classes must differ.")
        if rule.worn not in WEARINGS:
            raise ValueError(f"{where}: worn must be one of {', '.join(WEARINGS)}.")
        probability = rule.probability
        if isinstance(probability, bool) or not isinstance(probability, (int, float)) or not 0 <= probability <= 1:
            raise ValueError(f"{where}: probability must be a number between 0 and 1.")
        rule.probability = float(probability)
        if not isinstance(rule.styles, list) or not rule.styles or set(rule.styles) - set(MASK_STYLES):
            raise ValueError(f"{where}: styles must be a non-empty list of: {', '.join(MASK_STYLES)}.")
        if rule.mask_from not in MASKS_FROM:
            raise ValueError(f"{where}: mask_from must be one of {', '.join(MASKS_FROM)}.")
        if rule.mask_from == "twin" and rule.worn != "wrong":
            raise ValueError(f"{where}: a twin's mask worn right is the twin's own photo, already in its class; a rule "
                             "with mask_from twin moves it, worn wrongly.")
        return rule


def rules_from_setting(value) -> list[MaskRule] | None:
    """`synthetic_masks` as a config holds it: null (automatic, see automatic_rules), a list of rules ([]: off), or
    the single-rule object of maskdet before rules ({"enabled", "source", "target", "probability", "styles"})."""
    if value is None:
        return None
    if isinstance(value, dict) and "enabled" in value:
        return _rules_from_single(value)
    if not isinstance(value, list):
        raise ValueError("synthetic_masks must be null (automatic), or a list of rules such as [{\"source\": "
                         "\"without_mask\", \"target\": \"mask_incorrect\", \"worn\": \"wrong\"}] ([] turns drawn "
                         "masks off).")
    return [MaskRule.from_dict(rule, number) for number, rule in enumerate(value, start=1)]


def _rules_from_single(data: dict) -> list[MaskRule] | None:
    unknown = set(data) - {"enabled", "source", "target", "probability", "styles"}
    if unknown:
        raise ValueError(f"Unknown synthetic_masks setting(s): {', '.join(sorted(unknown))}.")
    if data["enabled"] is False:
        return []
    if data.get("source") is None and data.get("target") is None:
        return None
    rule = {key: data[key] for key in ("source", "target", "probability", "styles") if key in data}
    return [MaskRule.from_dict(rule, 1)]


def automatic_rules(classes: list[str]) -> list[MaskRule]:
    """The rules that class names suggest: masks worn right drawn on without_mask faces into with_mask, and masks worn
    wrongly into a worn-wrong class (mask_incorrect, ...), each where the dataset has both classes; with a with_mask
    class as well, the real masks of without_mask faces' masked twins moved into the worn-wrong class (a face
    without a twin gets none)."""
    bare, masked, wrong = (class_of_meaning(classes, meaning) for meaning in (WITHOUT_MASK, WITH_MASK, WORN_WRONG))
    rules = [MaskRule(bare, target, worn) for target, worn in ((masked, "right"), (wrong, "wrong")) if bare and target]
    if bare and masked and wrong:
        rules.append(MaskRule(bare, wrong, "wrong", TWIN_PROBABILITY, mask_from="twin"))
    return rules
