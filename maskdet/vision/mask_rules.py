"""Synthetic-mask rules (the `synthetic_masks` training setting): which class's faces get a drawn mask, worn right or
wrongly, and which class the drawn faces train as. One list of rules drives the config, the CLI and the Train page."""

from dataclasses import dataclass, field

from maskdet.core.classes import WITH_MASK, WITHOUT_MASK, WORN_WRONG, class_of_meaning
from maskdet.vision.synth import MASK_STYLES, WRONG_PLACEMENTS

WEARINGS = {  # a rule's `worn`: the placements it draws, and what the Train page calls it
    "right": (("right",), "worn right"),
    "wrong": (WRONG_PLACEMENTS, "worn wrongly (under the nose, on the chin, on the neck, hanging from one ear)"),
}
DEFAULT_PROBABILITY = 0.25


@dataclass
class MaskRule:
    """Faces of `source` with landmarks get, for each augmented view, a `probability` chance of one extra view with a
    mask drawn (worn right or wrongly, in one of `styles`), trained as `target`."""

    source: str
    target: str
    worn: str = "right"
    probability: float = DEFAULT_PROBABILITY
    styles: list[str] = field(default_factory=lambda: list(MASK_STYLES))

    @property
    def placements(self) -> tuple[str, ...]:
        return WEARINGS[self.worn][0]

    def text(self) -> str:
        return f"{self.source} → {self.target}, mask {WEARINGS[self.worn][1].split(' (')[0]}"

    @classmethod
    def from_dict(cls, data, number: int) -> "MaskRule":
        """A rule from its JSON object; anything else is refused with a sentence naming rule `number` (1 first)."""
        where = f"synthetic_masks rule {number}"
        if not isinstance(data, dict):
            raise ValueError(f"{where} must be an object with source, target, worn, probability and styles.")
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
    wrongly into a worn-wrong class (mask_incorrect, ...), each where the dataset has both classes."""
    bare = class_of_meaning(classes, WITHOUT_MASK)
    targets = [(class_of_meaning(classes, WITH_MASK), "right"), (class_of_meaning(classes, WORN_WRONG), "wrong")]
    return [MaskRule(bare, target, worn) for target, worn in targets if bare and target]
