"""Models: choose the active model, download a run's ONNX files or bundle, delete a run."""

import streamlit as st

import ui
from maskdet.runs.active import active_is_chosen, active_run, run_rows, set_active_run
from maskdet.runs.lifecycle import delete_run
from maskdet.runs.views import model_files, run_dir
from maskdet.serving.bundle import bundle_zip

ui.page_setup("Models")
st.title("Models")

NOTICE = "models-notice"  # a message to show after the rerun that follows a deletion


def megabytes(size: int) -> str:
    return f"{size / 2**20:.1f} MB" if size >= 2**20 else f"{size / 2**10:.0f} KB"


@st.cache_data(max_entries=4, show_spinner="Packing the bundle...")
def cached_bundle(folder: str, stamp: float) -> bytes:
    """The bundle zip of a run folder (stamp: the model file's mtime, so a retrained folder is packed again)."""
    return bundle_zip(folder)


def sentence(parts: list[str]) -> str:
    text = ", ".join(parts)
    return text[:1].upper() + text[1:] + "."


def show_downloads(run: dict) -> None:
    """The run's model files and bundle, each handed to the browser only when its button is clicked (data as a
    callable): Streamlit serves a download at a media URL that answers anyone, signed in or not, so a file is put there
    only on a click in a signed-in session, and Streamlit drops it after the next two script runs."""
    files = ui.attempt(model_files, store, run)
    if files is None:
        return
    if not files:
        st.error(f"Run {run['id']} has no model files in {run_dir(store, run)}: delete the run below "
                 "or train again.")
        return
    for item in files:
        with st.container(border=True):
            left, middle, right = st.columns([2, 4, 3], vertical_alignment="center")
            left.markdown(f"**{item['kind']}**  \n`{item['file']}` · {megabytes(item['bytes'])}")
            figures = []
            if item["test_accuracy"] is not None:
                figures.append(f"test accuracy {item['test_accuracy']:.3f}")
            if item["test_accuracy_delta"] is not None:
                figures.append(f"{item['test_accuracy_delta']:+.3f} against float32")
            if item["macro_f1"] is not None:
                figures.append(f"macro F1 {item['macro_f1']:.3f}")
            if item["timing"] is not None:
                figures.append(item["timing"].text())
            if item["versus_float32"]:
                figures.append(item["versus_float32"])
            middle.markdown(("**Parity check.** " if item["parity_ok"] else ":orange[**Parity check.**] ") + item["parity"]
                            + ("  \n" + sentence(figures) if figures else ""))
            right.download_button(f"Download {item['file']}", item["path"].read_bytes,
                                  file_name=f"maskdet-{run['id']}-{item['file']}", mime="application/octet-stream",
                                  key=f"download-{item['file']}", icon=":material/download:", on_click="ignore",
                                  wrap=True)  # a narrow column: "Download model.int8.onnx" on two lines, never cut
    if not any(item["file"] == "model.int8.onnx" for item in files):
        st.caption("No int8 variant: this run was trained with int8 quantisation off.")
    with st.container(border=True):
        left, middle, right = st.columns([2, 4, 3], vertical_alignment="center")
        folder = run_dir(store, run)
        bundle = ui.attempt(lambda: cached_bundle(str(folder), files[0]["path"].stat().st_mtime))
        left.markdown("**Bundle (zip)**" + (f"  \n{megabytes(len(bundle))}" if bundle else ""))
        with_int8 = " and `model.int8.onnx`" if any(item["file"] == "model.int8.onnx" for item in files) else ""
        middle.markdown(f"Everything to use the model elsewhere: `model.onnx`{with_int8}, MTCNN's three face-finding "
                        "networks, `labels.json`, `preprocessing.json` (the input contract and crop rule), "
                        "`MODEL_CARD.md`, `metrics.json`, a `README.md` and `predict_onnx.py`, which finds every face "
                        "in your photos, crops and classifies it like `maskdet predict` (needs only onnxruntime, numpy "
                        "and Pillow). Same parity and test metrics as the files above.")
        if bundle is not None:
            right.download_button("Download bundle", lambda: bundle, file_name=f"maskdet-{run['id']}.zip",
                                  mime="application/zip", key="download-bundle", icon=":material/folder_zip:",
                                  on_click="ignore")


def delete_section(all_runs: list[dict], active_id: str | None) -> None:
    captions = {run["id"]: ui.run_caption(run) + (" · active" if run["id"] == active_id else "") for run in all_runs}
    chosen = st.selectbox("Run to delete", list(captions), format_func=captions.get, key="delete-run", index=None,
                          placeholder="Choose a run")
    if chosen is None:
        return
    st.warning(f"Deleting {chosen} removes its registry entry and its folder (models, metrics, model card). "
               "This cannot be undone." + (" It is the active model: the latest other finished run takes over."
                                           if chosen == active_id else ""))
    confirmed = st.checkbox(f"Yes, delete run {chosen} and its files", key=f"delete-confirm-{chosen}")
    if st.button("Delete run", type="primary", disabled=not confirmed, key="delete-start",
                 icon=":material/delete:"):
        ui.attempt(delete_run, store, chosen)  # a refusal or failure shows as an error sentence
        if not any(run["id"] == chosen for run in ui.attempt(store.runs) or [{"id": chosen}]):
            st.session_state[NOTICE] = f"Run {chosen} and its files were deleted."
            st.rerun()


store = ui.attempt(ui.store)
if store is None:
    st.stop()
if NOTICE in st.session_state:
    st.success(st.session_state.pop(NOTICE))
all_runs = ui.attempt(store.runs)
if all_runs is None:
    st.stop()
if not all_runs:
    st.info("No models yet. Train one; its ONNX files and bundle can then be downloaded here.")
    ui.link_to_train()
    st.stop()

finished = [run for run in all_runs if run["status"] == "succeeded"]
by_id = {run["id"]: run for run in finished}
captions = {run_id: ui.run_caption(run) for run_id, run in by_id.items()}

st.subheader("Active model")
status = st.container()
if finished:
    active = ui.attempt(active_run, store)
    ids = list(by_id)
    left, right = st.columns([4, 1], vertical_alignment="bottom")
    choice = left.selectbox("Model for the live page", ids, format_func=captions.get, key="active-choice",
                            index=ids.index(active["id"]) if active and active["id"] in by_id else 0)
    if right.button("Make active", key="active-set"):
        if ui.attempt(set_active_run, store, choice):
            st.toast(f"{choice} is now the active model.")
    active = ui.attempt(active_run, store)
    with status:
        if active is None:
            st.warning("No finished run is used by default: none has a model file any more, or none scored above "
                       "chance on its test split. Choose one below, or train again.")
        elif active_is_chosen(store, active):
            st.success(f"The live page uses **{ui.run_caption(active)}**.")
        else:
            st.info(f"No model chosen: the live page uses the latest finished run that beats chance, "
                    f"**{ui.run_caption(active)}**. Choose one below to keep it active when newer runs finish.")
else:
    active = None
    status.info("No run has finished yet (see the table below for why); the live page needs a finished run.")
    ui.link_to_train()

if finished:
    st.subheader("Downloads")
    default = list(by_id).index(active["id"]) if active and active["id"] in by_id else 0
    shown = st.selectbox("Run", list(by_id), index=default, format_func=captions.get, key="download-run")
    show_downloads(by_id[shown])

st.subheader("All runs")
rows = ui.attempt(run_rows, store)
if rows is not None:
    ui.runs_dataframe(rows, ("run", "when", "status", "active", "accuracy", "macro_f1", "config", "note"),
                      "models-runs")

st.subheader("Delete a run")
delete_section(all_runs, active["id"] if active else None)
