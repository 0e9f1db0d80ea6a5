"""What a class name means to maskdet: a mask worn right, no mask, or a mask worn wrongly. The meaning picks a class's
colour, the automatic synthetic-mask rules, and which model class a boxed set's class is scored as."""

WITH_MASK, WITHOUT_MASK, WORN_WRONG = "with_mask", "without_mask", "worn_wrong"
_WORN_WRONG_WORDS = ("incorrect", "wrong")  # mask_incorrect, mask_weared_incorrect, mask_worn_wrong, ...


def class_meaning(name: str) -> str | None:
    """with_mask, without_mask or worn_wrong for a class of that meaning; None for any other class."""
    lowered = name.lower()
    if any(word in lowered for word in _WORN_WRONG_WORDS):
        return WORN_WRONG
    return lowered if lowered in (WITH_MASK, WITHOUT_MASK) else None


def class_of_meaning(labels: list[str], meaning: str) -> str | None:
    """The first of `labels` with that meaning (None: none has it)."""
    return next((label for label in labels if class_meaning(label) == meaning), None)
