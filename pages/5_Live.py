"""Live: a trained model on the webcam stream (streamlit-webrtc), or on an uploaded photo or short video.

Each browser session streams through its own LivePipeline (it carries the tracked faces and the counters from frame
to frame), made anew when the model or the settings change; the frame callback only touches that pipeline (it runs in
a worker thread, outside the script run), and the stats block reads its counters. Photos share one cached pipeline
per model and settings: they carry nothing from one photo to the next.
"""

import logging
import os
from dataclasses import replace
from pathlib import Path

import streamlit as st
from streamlit_webrtc import WebRtcMode, webrtc_streamer

import ui
from maskdet.runs.active import active_run, live_model_path
from maskdet.runs.views import finished_runs, model_files
from maskdet.serving import media
from maskdet.serving.live import RATE_WINDOW_SECONDS, LivePipeline, LiveSettings, stream_seats

ui.page_setup("Live")
st.title("Live")
st.caption("Faces found by MTCNN, cropped like in training and classified by a trained model: on your webcam stream, "
           "or on a photo or short video you upload.")

NO_FACE_HINT = "Try a smaller minimum face size, a lower detection confidence or a larger detection scale."
ALL_FACES = 0  # the face choice that adds every face of the photo
state = st.session_state

log = logging.getLogger("maskdet.serving.live")
if not log.handlers:  # the stream summaries go to the server's console (Streamlit sets up only its own loggers)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)


def stream_pipeline(path: str, stamp: float, settings: LiveSettings) -> LivePipeline:
    """This session's pipeline for the camera stream, kept while the model file and the settings stay the same."""
    key = (path, stamp, settings)
    if state.get("live-pipeline-key") != key:
        if "live-pipeline" in state:  # its seat passes to the new pipeline
            stream_seats(store.settings.live_streams).release(state["live-pipeline"])
        state["live-pipeline"] = LivePipeline(ui.classifier(path, stamp), settings)
        state["live-pipeline-key"] = key
    return state["live-pipeline"]


def model_choices() -> dict[str, str]:
    """{model file: caption}: the model files of the finished runs, then the uploaded files."""
    choices = {str(item["path"]): f"{ui.run_caption(run)} · {item['kind']}" for run in finished_runs(store)
               for item in model_files(store, run)}
    choices.update({str(path): f"{path.name} (uploaded)" for path in media.uploaded_models(store.settings.home)})
    return choices


def model_uploader() -> None:
    """Keep an uploaded maskdet .onnx file and choose it; a file that is not one shows why."""
    st.caption("The `model.onnx` or `model.int8.onnx` of a maskdet run (Models page, Download), for example one "
               "trained on another machine. It is kept in the data home.")
    upload = st.file_uploader("Model file", type=["onnx"], key=f"live-model-file-{state.get('live-upload-round', 0)}")
    if upload is not None:
        path = ui.attempt(media.save_uploaded_model, store.settings.home, upload.name, upload.getvalue())
        if path is not None:
            state["live-model"] = str(path)
            state["live-notice"] = f"Added {path.name}; the page now uses it."
            state["live-upload-round"] = state.get("live-upload-round", 0) + 1
            st.rerun()


def model_settings(path: str, stamp: float) -> LiveSettings:
    """The class confidence threshold (chosen on the Metrics page) and the detector settings saved with the model, or
    the defaults for a model that cannot be loaded (the tabs below say why)."""
    try:
        return LiveSettings.of_model(ui.classifier(path, stamp))
    except (ValueError, OSError):
        return LiveSettings()


SEARCH_SIDES = [160, 240, 320, 480, 640, 800, 1024]  # the "Detection scale" choices (a model's own joins them)


def settings_widgets(path: str, stamp: float) -> LiveSettings:
    """The Live settings, starting from the model's own each time another model (or a new version of it) is chosen;
    a note says when they differ from the model's, and so from `maskdet predict` and the bundle."""
    own = model_settings(path, stamp)
    detector = own.detector
    starts = {"live-min-face": detector.min_face_size, "live-detection": detector.min_probability,
              "live-threshold": own.class_threshold, "live-scale": detector.search_side,
              "live-max-faces": detector.max_faces}
    if state.get("live-settings-of") != (path, stamp) or any(key not in state for key in starts):
        state.update(starts)
        state["live-settings-of"] = (path, stamp)
    row = st.container(horizontal=True, vertical_alignment="bottom")  # five to a row at 1280 px, three at 1024 px
    columns = [row.container(width=170) for _ in range(5)]
    chosen = LiveSettings(
        replace(detector,
                min_face_size=columns[0].slider("Minimum face size (px)", 12, 200, step=4, key="live-min-face",
                                                help="Smaller faces are not looked for (pixels of the copy searched: "
                                                     "the frame itself when it is no larger than the detection "
                                                     "scale)."),
                min_probability=columns[1].slider("Detection confidence", 0.0, 0.99, step=0.01, key="live-detection",
                                                  help="How sure MTCNN must be that a box is a face (its own stage "
                                                       "thresholds apply first)."),
                search_side=columns[3].select_slider(
                    "Detection scale (px)", sorted({*SEARCH_SIDES, detector.search_side}), key="live-scale",
                    help="MTCNN looks for faces on a copy whose longer side is at most this: larger finds smaller "
                         "faces but is slower."),
                max_faces=columns[4].number_input("Max faces", 1, 1000, key="live-max-faces",
                                                  help="Faces classified per frame or photo, largest first; the "
                                                       "overlay says when there were more.")),
        columns[2].slider("Class confidence threshold", min(0.5, own.class_threshold),
                          max(0.99, own.class_threshold), step=0.01, key="live-threshold",
                          help="A face whose top class probability is lower is labelled uncertain. It starts from "
                               "the model's threshold, chosen on the Metrics page."))
    if chosen != own:
        note, button = st.columns([4, 1], vertical_alignment="center")
        note.caption("These settings differ from the model's own, which `maskdet predict`, evaluate and the model's "
                     "bundle use: faces and labels here may differ from theirs.")
        button.button("Use the model's settings", key="live-settings-reset", on_click=state.update, args=(starts,),
                      wrap=True)
    return chosen


def show_stats(live: LivePipeline, playing: bool) -> None:
    """Counters of the pipeline the stream uses, refreshed every second while it plays."""
    @st.fragment(run_every=1.0 if playing else None)
    def block() -> None:
        counters = live.snapshot()
        # the totals, then the counts per label: each as wide as its label, onto another row where the column is narrow
        totals = st.container(horizontal=True, gap="large")
        totals.metric("frames processed", counters.frames, width="content")
        totals.metric("frames dropped", counters.dropped, width="content", help="Frames that arrived while the "
                      "previous one was still being processed: skipped, so that the picture never falls behind the "
                      "camera.")
        totals.metric("faces classified", counters.faces_classified, width="content")
        totals.metric("fps", f"{counters.fps:.1f}", width="content", help=f"Frames processed in the last "
                      f"{RATE_WINDOW_SECONDS:g} s, per second: the figure on the video too.")
        if counters.labels:
            per_label = st.container(horizontal=True, gap="large")
            for label, count in sorted(counters.labels.items()):
                per_label.metric(label, count, width="content")
        st.caption(f"Totals since this model and these settings were loaded; faces are counted once per frame. "
                   f"fps and the stage times on the video are over the last {RATE_WINDOW_SECONDS:g} s.")
    block()


def camera(path: str, stamp: float, settings: LiveSettings) -> None:
    live = ui.attempt(stream_pipeline, path, stamp, settings)
    if live is None:
        return
    gate = ui.stream_gate(live, "The camera stream is", "Photos and videos can still be annotated in the next tab.",
                          key="live-try-again")
    if gate is None:
        return
    ice, seats = gate
    video, advice = st.columns([2, 1])
    with video:
        # The server's own peer gets the same ICE servers: left unset, streamlit-webrtc would pick public ones itself.
        context = ui.attempt(webrtc_streamer, key="live", mode=WebRtcMode.SENDRECV, rtc_configuration=ice,
                             server_rtc_configuration=ice,
                             media_stream_constraints={"video": {"width": 640, "height": 480}, "audio": False},
                             queued_video_frames_callback=media.frames_callback(live, seats),
                             on_video_ended=media.ended_callback(live, seats), async_processing=True)
        show_stats(live, playing=context is not None and context.state.playing)
    with advice:
        ui.class_legend(live.classifier.labels)
    advice.markdown(
        "Press **START** and allow the camera when the browser asks.\n\n"
        "Browsers open the camera only for pages served over **https** or from **localhost**: from another machine, "
        "reach the dashboard through https or an SSH tunnel to localhost.\n\n"
        "If you blocked the camera, click the camera or lock icon in the address bar, allow the camera for this site "
        "and reload the page.\n\n"
        "If the video never starts while the dashboard runs on another network, it needs a STUN or TURN server: set "
        "MASKDET_ICE_SERVERS.\n\n"
        "Frames go from your browser to this server and back; nothing is recorded. No camera? Use the next tab.")


def show_photo(data: bytes, name: str, key: str, path: str, stamp: float, settings: LiveSettings) -> None:
    """A photo (or a video's frame) annotated, its faces numbered in a table, and a way to add them to the dataset."""
    live = ui.attempt(ui.photo_pipeline, path, stamp, settings)
    result = ui.attempt(media.annotate_photo, data, live, store.settings.max_pixels) if live else None
    if result is None:
        return
    ui.class_legend(live.classifier.labels)
    ui.show_annotated_photo(result, name, key, NO_FACE_HINT)
    if result.predictions:
        add_to_dataset(data, name, [p.box for p in result.predictions], key)


def add_to_dataset(data: bytes, name: str, boxes: list, key: str) -> None:
    """Add a face of the photo (by its number in the table, or all of them) to a class; sentences say what happened."""
    labels = ui.attempt(store.labels)
    if labels == []:
        st.caption("Add a class on the Dataset page to add faces to the dataset.")
    if not labels:  # none yet, or the store said why it cannot list them
        return
    st.write("**Add to the dataset**: the whole photo goes in with the face's box as its face box (a crop of the "
             "face when the photo is in the dataset already with another face).")
    face_column, class_column, button_column = st.columns([1, 2, 1], vertical_alignment="bottom")
    numbers = list(range(1, len(boxes) + 1)) + ([ALL_FACES] if len(boxes) > 1 else [])
    face = face_column.selectbox("Face", numbers, key=f"{key}-add-face",
                                 format_func=lambda n: "all faces" if n == ALL_FACES else f"face {n}")
    label = ui.class_picker(class_column, "Class", labels, f"{key}-add-class")
    if not button_column.button("Add to the dataset", key=f"{key}-add", wrap=True):
        return
    detector = ui.attempt(ui.detector)
    for number in range(1, len(boxes) + 1) if face == ALL_FACES else [face]:
        outcome = ui.attempt(media.add_face, store, data, name, number, boxes[number - 1], label, detector,
                             ui.verbatim) if detector else None
        if outcome is None:
            break
        (st.success if outcome.added else st.info)(outcome.message)


def annotate_video(upload, path: str, stamp: float, settings: LiveSettings, bar) -> media.AnnotatedVideo:
    """The uploaded video through a fresh pipeline (it carries faces from frame to frame)."""
    return media.annotate_video(upload.getvalue(), LivePipeline(ui.classifier(path, stamp), settings),
                                lambda done, total: bar.progress(min(done / total, 1.0),
                                                                 text=f"Annotating frame {done} of {total}"))


def show_video(upload, path: str, stamp: float, settings: LiveSettings) -> None:
    st.caption(f"Videos up to {media.MAX_VIDEO_SECONDS} s and Full HD (1920x1080). Frames larger than "
               f"{media.MAX_VIDEO_SIDE} px are scaled down and the sound is dropped; up to "
               f"{media.MAX_ANNOTATED_FRAMES} frames go through the same pipeline as the camera stream (a longer "
               "video is sampled evenly: 30 s at 30 fps comes back at 10 fps).")
    if st.button("Annotate the video", type="primary", key="live-video-start"):
        bar = st.progress(0.0, text="Opening the video...")
        state["live-video"] = (upload.file_id, ui.attempt(annotate_video, upload, path, stamp, settings, bar))
        bar.empty()
    file_id, result = state.get("live-video", (None, None))
    if result is None or file_id != upload.file_id:
        return
    player, details = st.columns([2, 1])
    player.video(result.data, format=result.mime)
    with details:
        ui.class_legend(ui.classifier(path, stamp).labels)
    counts = ", ".join(f"{label} {count}" for label, count in sorted(result.counters.labels.items()))
    details.caption(f"{result.frames} frames ({result.seconds:.1f} s, {result.width}x{result.height}); faces "
                    f"classified: {result.counters.faces_classified}" + (f" ({counts})" if counts else "") + ".")
    details.download_button("Download the annotated video", result.data,
                            file_name=f"{Path(upload.name).stem}-annotated.{result.suffix}", mime=result.mime,
                            key="live-video-download", on_click="ignore", icon=":material/download:")
    show_frame(upload, result, path, stamp, settings)


def show_frame(upload, result: media.AnnotatedVideo, path: str, stamp: float, settings: LiveSettings) -> None:
    """One frame of the annotated video on its own, to add its faces to the dataset (decoded again when asked for:
    the session keeps that one frame, never the video's frames)."""
    seconds_a_frame = result.seconds / result.frames
    number_column, button_column = st.columns([1, 3], vertical_alignment="bottom")
    number = number_column.number_input("Frame", 1, result.frames, key="live-frame-number",
                                        help=f"1 to {result.frames}, {seconds_a_frame:.2f} s apart, as in the "
                                             "annotated video.")
    if button_column.button(f"Show frame {number} (at {(number - 1) * seconds_a_frame:.1f} s) to add its faces to "
                            "the dataset", key="live-frame-show"):
        with st.spinner(f"Decoding frame {number}..."):
            state["live-frame"] = (upload.file_id, number, ui.attempt(media.video_frame, upload.getvalue(), number))
    file_id, shown, frame = state.get("live-frame", (None, None, None))
    if frame is not None and file_id == upload.file_id:
        show_photo(frame, f"{Path(upload.name).stem}-frame{shown}.jpg", "live-frame", path, stamp, settings)


store = ui.attempt(ui.store)
if store is None:
    st.stop()
if "live-notice" in state:
    st.success(state.pop("live-notice"))
choices = ui.attempt(model_choices)
if choices is None:
    st.stop()

model_area = st.container()
with st.expander("Use a model file exported by maskdet (.onnx)", expanded=not choices):
    model_uploader()
if not choices:
    with model_area:
        st.info("No trained model yet. Train one (the page then uses the active model), or upload a model file "
                "exported by maskdet below.")
        ui.link_to_train()
    st.stop()

with model_area:
    if state.get("live-model") not in choices:  # first visit, or the chosen file is gone: the active model
        active = ui.attempt(active_run, store)
        active_path = str(live_model_path(store, active)) if active else None
        state["live-model"] = active_path if active_path in choices else next(iter(choices))
    model = st.selectbox("Model", list(choices), format_func=choices.get, key="live-model",
                         help="The active model (set on the Models page) is chosen first, as its int8 file when the "
                         "run has one that kept the test accuracy and was measured faster than float32 on this "
                         "machine.")
    stamp = ui.attempt(os.path.getmtime, model)
    if stamp is None:
        st.stop()
    settings = settings_widgets(model, stamp)

camera_tab, upload_tab = st.tabs(["Camera", "No camera? Upload a photo or video"])
with camera_tab:
    camera(model, stamp, settings)
with upload_tab:
    upload = st.file_uploader("A photo or a short video", type=ui.PHOTO_TYPES + list(media.VIDEO_TYPES),
                              key="live-upload")
    if upload is not None:
        if Path(upload.name).suffix.lower().lstrip(".") in media.VIDEO_TYPES:
            show_video(upload, model, stamp, settings)
        else:
            show_photo(upload.getvalue(), upload.name, "live-photo", model, stamp, settings)
