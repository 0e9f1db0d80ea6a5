"""Train: the training settings, previews of the augmented and mask-drawn faces, and a run followed live.

Training runs in its own process (`python -m maskdet train --run-id ...`, started by maskdet.runs.launch); this page
only reads the run registry, so a run keeps going when the page is reloaded or left, and shows up again here.
"""

import os
from dataclasses import asdict
from datetime import datetime, timezone

import streamlit as st

import ui
from maskdet.core.settings import load_settings
from maskdet.data.insights import preview_photo, summarize
from maskdet.runs.active import model_path, passed_over, run_rows, set_active_run
from maskdet.runs.estimate import BENCHMARK, latest_throughput, photos_trained, training_seconds
from maskdet.runs.launch import start_training
from maskdet.runs.lifecycle import active_training, cancel_training
from maskdet.runs.views import RunRecord, history_points
from maskdet.serving import media
from maskdet.training.config import CHOSEN, RANGED, TrainConfig
from maskdet.training.preview import synthetic_preview
from maskdet.training.progress import STAGES
from maskdet.vision.augment import AUGMENTATIONS, AugmentConfig, preview
from maskdet.vision.faces import CropRule, crop_face
from maskdet.vision.mask_rules import MASKS_FROM, WEARINGS, MaskRule, automatic_rules
from maskdet.vision.synth import MASK_STYLES

ui.page_setup("Train")
st.title("Train a model")

DEFAULTS = TrainConfig()
SETTING_KEYS = []  # widget keys of the settings, cleared by "Reset to defaults"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = max(0, round(seconds))
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min {seconds % 60:02d} s"


def elapsed(start: str | None, end: str | None = None) -> float | None:
    """Seconds between two registry timestamps (ISO, UTC); up to now when end is None."""
    try:
        started = datetime.fromisoformat(start)
        finished = datetime.fromisoformat(end) if end else datetime.now(timezone.utc)
    except (TypeError, ValueError):
        return None
    return (finished - started).total_seconds()


def setting(widget, label: str, key: str, **kwargs):
    """A settings widget whose value survives leaving the page and coming back."""
    SETTING_KEYS.append(key)
    return widget(label, key=key, persist_state="session", **kwargs)


def config_setting(column, name: str):
    """A training setting's widget, built from its TrainConfig field: a number input with the field's range, step and
    format, or a select box of its choices; its default, label and help."""
    spec = RANGED.get(name) or CHOSEN[name]
    meta, default = spec.metadata, getattr(DEFAULTS, name)
    if name in CHOSEN:
        return setting(column.selectbox, meta["label"], name, options=meta["choices"],
                       index=meta["choices"].index(default), help=meta["help"])
    low, high = meta["range"]
    extra = {key: meta[key] for key in ("step", "format") if meta[key] is not None}
    return setting(column.number_input, meta["label"], name, min_value=low, max_value=high, value=default,
                   help=meta["help"], **extra)


def config_settings(names: list[str]) -> dict:
    """The widgets of these training settings, three to a row, their inputs in line however their labels wrap; their
    values by name."""
    values = {}
    for start in range(0, len(names), 3):
        for column, name in zip(st.columns(3, vertical_alignment="bottom"), names[start:start + 3]):
            values[name] = config_setting(column, name)
    return values


def remove_rule(row: int) -> None:
    st.session_state["synthetic_rows"] = [kept for kept in st.session_state["synthetic_rows"] if kept != row]


def add_rule() -> None:
    rows = st.session_state["synthetic_rows"]
    st.session_state["synthetic_rows"] = [*rows, max(rows, default=-1) + 1]


def rule_row(row: int, default: MaskRule, classes: list[str]) -> dict:
    """A rule's inputs (its widget keys by `row`, which stays when rules above it are removed) and their setting."""
    key = f"synthetic_rule_{row}_"
    with st.container(border=True):
        source_column, target_column, worn_column = st.columns(3, vertical_alignment="bottom")
        source = setting(source_column.selectbox, "Source class (gets a drawn mask)", key + "source", options=classes,
                         index=classes.index(default.source) if default.source in classes else 0)
        target = setting(target_column.selectbox, "Target class (trained as)", key + "target", options=classes,
                         index=classes.index(default.target) if default.target in classes else 0)
        worn = setting(worn_column.selectbox, "Mask worn", key + "worn", options=list(WEARINGS),
                       index=list(WEARINGS).index(default.worn), format_func=lambda name: WEARINGS[name][1])
        from_column, probability_column, remove_column = st.columns([2.5, 2.5, 1.5], vertical_alignment="bottom")
        mask_from = setting(from_column.selectbox, "Masks", key + "mask_from", options=list(MASKS_FROM),
                            index=list(MASKS_FROM).index(default.mask_from),
                            format_func=lambda name: MASKS_FROM[name][0],
                            help="; ".join(f"{name}: {text}" for name, text in MASKS_FROM.values())
                            + ". A twin's mask is only moved worn wrongly, on faces that have a twin.")
        probability = setting(probability_column.slider, "Probability", key + "probability", min_value=0.0,
                              max_value=1.0, value=float(default.probability), step=0.05,
                              help="For each augmented view of a source face, the chance of one extra view with a "
                                   "drawn mask.")
        styles = setting(st.multiselect, "Mask styles", key + "styles", options=list(MASK_STYLES),
                         default=default.styles, format_func=lambda style: MASK_STYLES[style].split(",")[0],
                         disabled=mask_from == "twin",  # a twin's mask is the one in its photo
                         help="; ".join(MASK_STYLES.values()) + ".")  # short names: a long one is cut in its chip
        remove_column.button("Remove", key=key + "remove", on_click=remove_rule, args=(row,),
                             icon=":material/delete:", help="Remove this rule.")
    return {"source": source, "target": target, "worn": worn, "probability": float(probability),
            "styles": list(styles), "mask_from": mask_from}


def rule_rows(classes: list[str]) -> list[dict]:
    """The synthetic-mask rules, a row of inputs each (to begin with, those the class names suggest: see
    automatic_rules), and a button that adds one; their settings."""
    suggested = automatic_rules(classes)
    SETTING_KEYS.append("synthetic_rows")
    rows = st.session_state.setdefault("synthetic_rows", list(range(len(suggested))))
    rules = [rule_row(row, suggested[row] if row < len(suggested) else MaskRule(classes[0], classes[-1]), classes)
             for row in rows]
    if not rows:
        st.caption("No rule: nothing is drawn. Add one, for example without_mask → mask_incorrect, worn wrongly.")
    st.button("Add a rule", on_click=add_rule, icon=":material/add:", key="add_rule")
    return rules


def reset_settings() -> None:
    for key in SETTING_KEYS:
        st.session_state.pop(key, None)


def next_face() -> None:
    st.session_state["preview_index"] = st.session_state.get("preview_index", 0) + 1


# ---- data home --------------------------------------------------------------------------------------

store = ui.attempt(ui.store)
if store is None:
    st.stop()
summary = ui.attempt(summarize, store)
if summary is None:
    st.stop()
if sum(summary.counts.values()) == 0:
    st.info("No images yet. Import photos on the **Dataset** page first: a folder or zip of class folders "
            "(for example with_mask/ and without_mask/), uploads or webcam captures. Then come back here to train.")
    ui.link("pages/1_Dataset.py", "Open the Dataset page", ":material/photo_library:",
            "Open the **Dataset** page from the sidebar.")
    st.stop()

st.caption("Images: " + ", ".join(f"{label} {count}" for label, count in summary.counts.items())
           + ". The defaults train well; change them only to experiment.")
for warning in summary.warnings:
    st.warning(warning)

# ---- the run: start it, follow it (the live part is drawn at the end, once a Start click is handled) --------

st.subheader("Training")
start_column, init_column = st.columns([1, 3], vertical_alignment="center")
start = start_column.button("Start training", type="primary", icon=":material/play_arrow:", key="start",
                            help="Trains with the settings below in a background process.")
estimate_area = start_column.empty()
random_init = setting(init_column.checkbox, "Random init (experiments only)", "random_init",
                      value=DEFAULTS.random_init,
                      help="No pretrained weights: much worse models; every result of the run says so.")
cluster = load_settings().cluster
if cluster:
    st.caption(f"Runs train on the cluster at `{cluster}` (`MASKDET_CLUSTER`): one of its workers takes each run.")
weights = load_settings().backbone_weights
if random_init:
    st.caption("Backbone: random weights, no pretrained ones (an experiment): expect a much worse model.")
elif weights:
    st.caption(f"Backbone: ImageNet MobileNetV2 weights from `{weights}` (`MASKDET_BACKBONE_WEIGHTS`).")
    if not weights.is_file():
        st.warning(f"The backbone weights file {weights} does not exist: training will fail. Fix "
                   "MASKDET_BACKBONE_WEIGHTS and restart the dashboard, or train with random init.")
else:
    st.caption("Backbone: torchvision's ImageNet MobileNetV2 weights (`IMAGENET1K_V1`), which the training process "
               "downloads once into the torch cache. Without internet access, set `MASKDET_BACKBONE_WEIGHTS` to a "
               "local mobilenet_v2 state_dict file before starting the dashboard.")
start_messages = st.container()
status_area = st.container()
try_area = st.container()
st.divider()

# ---- settings -------------------------------------------------------------------------------------

settings_column = st.container()  # the previews come under the settings they show: side by side, neither fits 1024 px
with settings_column:
    st.subheader("Settings")
    configured = {**RANGED, **CHOSEN}
    values = config_settings([name for name in configured if not configured[name].metadata["more"]])
    st.markdown("**Split** (near-duplicate photos always stay on one side)")
    first, second, third = st.columns(3)
    split = [setting(column.number_input, label, f"split_{name}", min_value=0.0, max_value=1.0, value=default,
                     step=0.05, format="%.2f")
             for column, name, label, default in zip((first, second, third), ("train", "val", "test"),
                                                     ("Train share", "Validation share", "Test share"),
                                                     DEFAULTS.split)]

    with st.expander("More settings"):
        values.update(config_settings([name for name in configured if configured[name].metadata["more"]]))
        first, second = st.columns(2)
        class_weights = setting(first.toggle, "Weight classes by frequency", "class_weights",
                                value=DEFAULTS.class_weights)
        quantize = setting(second.toggle, "Also export an int8 model", "quantize", value=DEFAULTS.quantize)
        labels = setting(st.multiselect, "Classes to train on", "labels", options=list(summary.counts), default=[],
                         placeholder="All classes with images or drawn faces")

    st.subheader("Augmentation")
    st.caption("Each one: on/off, how often it is applied to a training view, and how strong it is (0–1).")
    augment = {}
    for name, spec in AUGMENTATIONS.items():
        toggle_column, probability_column, strength_column = st.columns([2, 1, 1], vertical_alignment="center")
        enabled = setting(toggle_column.toggle, spec.label, f"aug_{name}_enabled", value=spec.default.enabled,
                          help=spec.help)
        probability = setting(probability_column.slider, "Probability", f"aug_{name}_probability", min_value=0.0,
                              max_value=1.0, value=float(spec.default.probability), step=0.05, disabled=not enabled)
        strength = setting(strength_column.slider, "Strength", f"aug_{name}_strength", min_value=0.0,
                           max_value=1.0, value=float(spec.default.strength), step=0.05,
                           disabled=not enabled or not spec.has_strength,
                           help=None if spec.has_strength else "Only on/off and probability matter for this one.")
        augment[name] = {"enabled": bool(enabled), "probability": float(probability), "strength": float(strength)}
    preview_area = st.container()

    st.subheader("Synthetic masks")
    st.caption("Masks drawn on the faces of a source class, trained as a target class. Worn right, in many styles "
               "and colours, they teach the shape of a mask rather than the look of the dataset's masks; worn wrongly "
               "(under the nose, on the chin, on the neck, hanging from one ear) they make a class of masks worn "
               "wrongly from bare faces alone, such as an empty class named mask_incorrect. Where a bare photo has "
               "a masked twin (the same photo with a mask pasted on, as in masks-small), a rule can move the twin's "
               "own mask instead, so that the dataset's real masks are seen worn both ways.")
    masks_enabled = setting(st.toggle, "Draw masks on faces", "synthetic_enabled", value=True,
                            help="Only faces with landmarks (found at import) get a mask.")
    rule_settings = rule_rows(list(summary.counts)) if masks_enabled else []
    mask_rules = [rule for rule in (ui.attempt(MaskRule.from_dict, rule_setting, number)
                                    for number, rule_setting in enumerate(rule_settings, start=1)) if rule is not None]
    drawn_area = st.container()
    st.button("Reset settings to defaults", on_click=reset_settings, icon=":material/restart_alt:", key="reset")

# ---- previews: augmented views and drawn masks ------------------------------------------------------

with preview_area:
    st.subheader("What the model will see")
    record = ui.attempt(preview_photo, store, st.session_state.get("preview_index", 0))
    rule = CropRule(float(values["crop_margin"]), int(values["input_size"]))
    if record:
        crop = ui.attempt(lambda: crop_face(store.load_image(record), record.face.box if record.face else None, rule))
        views = ui.attempt(lambda: preview(crop, AugmentConfig.from_dict(augment), 8, seed=int(values["seed"]))) \
            if crop is not None else None
        if views is not None:
            st.image([ui.inline(image) for image in (crop, *views)], width=112,
                     caption=["face crop", *(f"view {i}" for i in range(1, 9))])
            where = "face found" if record.face else "no face found: training uses the whole photo"
            st.caption(f"{ui.literal(record.source_name)} ({ui.literal(record.label)}, {where}). Training uses the "
                       f"clean crop plus {int(values['views_per_image'])} views like these per training image.")
    st.button("Show a different face", on_click=next_face, icon=":material/shuffle:", key="next_face")
with drawn_area:
    for mask_rule in mask_rules:
        twin = mask_rule.mask_from == "twin"
        st.subheader(f"{'Moved' if twin else 'Drawn'} masks: {mask_rule.text()}")
        drawn = ui.attempt(lambda: synthetic_preview(store, mask_rule, rule, 8, int(values["seed"])))
        if drawn:
            st.image([ui.inline(image) for image, _ in drawn], width=112,
                     caption=[ui.literal(caption) for _, caption in drawn])
            st.caption(f"{ui.literal(mask_rule.source)} faces with "
                       f"{'their masked twin’s own mask moved' if twin else 'a drawn mask'}, as training adds them "
                       f"to {ui.literal(mask_rule.target)}.")

config_data = {
    **{name: RANGED[name].type(value) if name in RANGED else value for name, value in values.items()},
    "split": [float(share) for share in split], "class_weights": bool(class_weights), "quantize": bool(quantize),
    "labels": list(labels) or None, "random_init": bool(random_init), "augment": augment,
    "synthetic_masks": None if masks_enabled and rule_settings == [
        asdict(rule) for rule in automatic_rules(list(summary.counts))] else rule_settings,  # untouched: automatic
}


def run_estimate(config: TrainConfig, exclude: str | None = None) -> tuple[float, str]:
    """Seconds a run of `config` on today's dataset should take, and where the throughput comes from."""
    throughput = latest_throughput([run for run in store.runs() if run["id"] != exclude])
    counts = store.label_counts()
    return training_seconds(config, photos_trained(config, counts), throughput, list(counts)), throughput.source


try:
    planned = run_estimate(TrainConfig.from_dict(config_data))
    first = planned[1] == BENCHMARK.source  # no run has timed this machine yet
    estimate_area.caption(
        f"About {duration(planned[0])}" + (", a first guess" if first else ""),
        help=f"From the click to the end: estimated from the dataset's size and the throughput of {planned[1]}" + (
            ", as no run has timed this machine yet. Once started, the run times this machine from its own first "
            "batches, and the time left follows it." if first else "."))
except ValueError:  # settings that cannot train: Start says why
    pass

if start:
    with start_messages:
        config = ui.attempt(TrainConfig.from_dict, config_data)
        if config is not None:
            run_id = ui.attempt(start_training, store, config.to_dict())
            if run_id:
                st.toast(f"Training run {run_id} started.", icon=":material/play_arrow:")


# ---- the run, followed live ---------------------------------------------------------------------------


def show_curves(history: list[dict] | None) -> None:
    """Train and validation loss and accuracy per epoch (head epochs, then fine-tune epochs)."""
    if not history:
        return
    points = history_points(history)
    left, right = st.columns(2)
    left.altair_chart(ui.curves_chart(points, "loss"), width="stretch")
    right.altair_chart(ui.curves_chart(points, "accuracy"), width="stretch")


def stage_fraction(progress: dict) -> float:
    """How far the current stage is: by epochs in the epoch stages, by steps otherwise."""
    step, steps = progress.get("step") or 0, max(1, progress.get("steps") or 1)
    epoch, epochs = progress.get("epoch") or 0, progress.get("epochs") or 0
    if epochs and not (step == epoch and steps == epochs):  # a batch inside an epoch (fine-tuning)
        fraction = (max(epoch - 1, 0) + step / steps) / epochs
    else:
        fraction = step / steps
    return min(1.0, max(0.0, fraction))


def show_active(run: dict) -> None:
    progress = run.get("progress") or {}
    stage = progress.get("stage")
    config = RunRecord.of(run).config
    order = [name for name in STAGES if (name != "finetune" or config.get("finetune_blocks"))
             and (name != "landmarks" or stage == "landmarks")]
    running_for = duration(elapsed(run.get("started_at") or run.get("created_at")))
    if not stage:
        st.progress(0.0, text=f"Run {run['id']}: starting the training process ({running_for})...")
    else:
        number = order.index(stage) + 1 if stage in order else "?"
        details = []
        if progress.get("epochs"):
            details.append(f"epoch {progress.get('epoch')}/{progress['epochs']}")
        else:
            details.append(f"{progress.get('step', 0)}/{progress.get('steps', 0)}")
        if progress.get("loss") is not None:
            details.append(f"loss {progress['loss']:.4f}")
        if progress.get("accuracy") is not None:
            details.append(f"validation accuracy {progress['accuracy']:.3f}")
        if progress.get("task"):  # the stage's steps are tasks: name the one under way instead of its number
            details[0] = f"{progress['task']} ({progress.get('step', 0) + 1}/{progress.get('steps', 0)})"
        soonest, latest = progress.get("soonest_seconds"), progress.get("eta_seconds")
        if soonest is not None and latest is not None and duration(soonest) != duration(latest):
            details.append(f"{duration(soonest)} to {duration(latest)} left in this stage (it stops early once "
                           "validation loss stops improving)")
        elif latest is not None:
            details.append(f"about {duration(latest)} left in this stage")
        left = progress.get("left_seconds")  # forecast by the training process from this run's own batches
        if left is None:  # a run of an older maskdet: the estimate made before it started, less the time spent
            if f"estimate-{run['id']}" not in st.session_state:  # once a run: this block redraws every second
                st.session_state[f"estimate-{run['id']}"] = ui.attempt(
                    lambda: run_estimate(TrainConfig.from_dict(config), run["id"])[0])
            total = st.session_state[f"estimate-{run['id']}"]
            if total is not None:
                left = max(total - (elapsed(run.get("started_at")) or 0), latest or 0)
        if left is not None:
            details.append(f"about {duration(left)} left in all")
        st.progress(stage_fraction(progress), text=f"Run {run['id']}, stage {number} of {len(order)}: "
                    f"{STAGES.get(stage, stage)} — {', '.join(details)}. Running for {running_for}.")
    if run.get("cancel_requested"):
        st.button("Cancelling...", disabled=True, key="cancelling", icon=":material/hourglass_top:")
        st.caption("Cancel requested: the run stops within a second or two.")
    else:
        st.button("Cancel training", key="cancel", icon=":material/stop:", on_click=ui.attempt,
                  args=(cancel_training, store, run["id"]))
    show_curves(progress.get("history"))


def show_finished(run: dict) -> None:
    record = RunRecord.of(run)
    status, took = record.status, duration(record.duration_s)
    if status == "succeeded":
        metrics, test = record.metrics, record.test
        if test:
            st.success(f"Run {run['id']} finished in {took}: test accuracy {test['accuracy']:.3f}, macro F1 "
                       f"{test['macro_f1']:.3f} on {test.get('num_samples', '?')} test images.")
        else:
            st.success(f"Run {run['id']} finished in {took}. The test split was empty, so there are no test scores.")
        if metrics.get("random_init"):
            st.warning("This model was trained from random weights (experiments only): expect poor results.")
        if "made-active" in st.session_state:
            st.success(st.session_state.pop("made-active"))
        reason = ui.attempt(passed_over, store, run)
        if reason:
            note, button = st.columns([4, 1], vertical_alignment="center")
            note.warning(reason)
            if button.button("Make it the active model", key=f"make-active-{run['id']}", wrap=True):
                if ui.attempt(set_active_run, store, run["id"]):
                    st.session_state["made-active"] = (f"Run {run['id']} is now the active model: Live, predict and "
                                                       "evaluate use it by default.")
                    st.rerun()
        ui.link("pages/3_Metrics.py", "See its metrics", ":material/monitoring:",
                "Its curves, confusion matrix and mistakes are on the **Metrics** page.")
    elif status == "failed":
        st.error(f"Run {run['id']} failed: {run.get('error') or 'no message was recorded.'}")
    elif status == "cancelled":
        st.warning(f"Run {run['id']} was cancelled after {took}.")
    history = (run.get("progress") or {}).get("history")
    if history:
        with st.expander("Training curves of this run"):
            show_curves(history)


active = ui.attempt(active_training, store)
page_active_id = active["id"] if active else None


@st.fragment(run_every=1.0)
def training_status() -> None:
    """Polls the registry every second; a run starting or ending refreshes the whole page."""
    current = ui.attempt(active_training, store)
    if (current["id"] if current else None) != page_active_id:
        st.rerun()
    if current:
        ui.attempt(show_active, current)
        return
    every_run = ui.attempt(store.runs) or []
    if every_run:
        ui.attempt(show_finished, every_run[0])
    else:
        st.caption("No training runs yet. Training runs in the background: you can leave this page and come "
                   "back.")


with status_area:
    training_status()


def try_the_model(run: dict) -> None:
    """A photo dropped here is annotated by the finished run's model, as the Live page's photo tab would."""
    path = model_path(store, run)
    upload = st.file_uploader(f"Try run {run['id']} on a photo", type=ui.PHOTO_TYPES, key=f"try-photo-{run['id']}",
                              help="Its faces are found, cropped and classified by this run's model.onnx, with the "
                                   "settings it carries, as `maskdet predict` would. Nothing is stored.")
    if upload is None:
        return
    stamp = ui.attempt(os.path.getmtime, path)
    pipeline = ui.attempt(ui.photo_pipeline, str(path), stamp) if stamp else None
    result = (ui.attempt(media.annotate_photo, upload.getvalue(), pipeline, store.settings.max_pixels)
              if pipeline else None)
    if result is not None:
        ui.show_annotated_photo(result, upload.name, "try-photo", "The whole photo is not classified: try one where "
                                "the face is larger, or draw its box on the Dataset page before training.")


latest = (ui.attempt(store.runs) or [None])[0] if page_active_id is None else None
if latest is not None and latest["status"] == "succeeded":
    with try_area:
        try_the_model(latest)

with st.expander("Recent runs"):
    recent = ui.attempt(run_rows, store) or []
    if recent:
        ui.runs_dataframe(recent[:10], ("run", "when", "status", "accuracy", "duration_s", "note"), "train-runs")
    else:
        st.caption("None yet.")
