"""maskdet home: navigation and a status board with the next step to take.

`streamlit run app.py` first imports this file for the server it names (`app`: Streamlit's, with the routes and
guard of ui/server.py), then runs it as the home page."""

import streamlit as st

import ui
from maskdet.data.insights import summarize
from maskdet.runs import backup
from maskdet.runs.active import active_run, run_rows
from maskdet.runs.views import RunRecord

BACKUP = "home-backup"  # the prepared backup: (runs chosen, summary, bytes)


def backup_section(store) -> None:
    """Run choice, a progress bar while the archive is written, then its download."""
    st.subheader("Back up this project")
    st.caption("One zip of the whole project: the database (classes, photos with their faces, groups and splits, "
               "runs), every photo, and the chosen runs' models, metrics and logs. It is safe to take while training "
               "or importing. `python -m maskdet restore FILE` loads it into an empty data home, on SQLite or "
               "PostgreSQL.")
    runs = ui.attempt(backup.backup_runs, store) or []
    captions = {run["id"]: ui.run_caption(run) for run in runs}
    chosen = st.multiselect("Runs to include", list(captions), default=list(captions), format_func=captions.get,
                            key="backup-runs", help="Finished runs; one still training can be included once it ends.")
    if st.button("Prepare backup", key="backup-start", icon=":material/archive:"):
        bar = st.progress(0.0, text="Backing up...")
        made = ui.attempt(backup.backup_bytes, store, chosen, lambda done, total: bar.progress(
            done / total, text=f"Backing up: {done} of {total} files"))
        bar.empty()
        if made:
            st.session_state[BACKUP] = (chosen, *made)
    prepared = st.session_state.get(BACKUP)
    if prepared and prepared[0] == chosen:
        _, result, data = prepared
        st.success(f"Backup ready: {result['images']} images in {result['labels']} classes and "
                   f"{len(result['runs'])} of {len(captions)} runs, {len(data) / 2**20:.1f} MB.")
        for item in result["skipped"]:
            st.warning(f"Left out {item['item']}: {item['reason']}.")
        st.download_button("Download backup", data, file_name=backup.download_name(result), mime="application/zip",
                           key="backup-download", icon=":material/download:", on_click="ignore")


def next_step(store, summary) -> None:
    """What to do now: add photos, add a second class, train, or use the active model."""
    st.subheader("Next step")
    classes_with_photos = len([n for n in summary.counts.values() if n > 0])
    active = active_run(store)
    if sum(summary.counts.values()) == 0:
        st.info("No images yet. Open **Dataset** to upload photos or a zip of class folders, or capture faces "
                "from the webcam.")
        st.page_link("pages/1_Dataset.py", label="Add images", icon=":material/add_photo_alternate:")
    elif classes_with_photos < 2 or not active:
        for warning in summary.warnings:
            st.warning(warning)
        st.info("The dataset is ready for a first model: open **Train** and press Start (the defaults train well)."
                if classes_with_photos >= 2 else "Add images of a second class before training.")
        st.page_link("pages/2_Train.py", label="Train a model", icon=":material/model_training:")
    else:
        record = RunRecord.of(active)
        st.success(f"Active model **{record.id}**: test accuracy {record.accuracy or 0:.3f}, macro F1 "
                   f"{record.macro_f1 or 0:.3f}. Try it on the webcam in **Live**, download it from **Models** or "
                   "read its **Metrics**.")
        st.page_link("pages/5_Live.py", label="Try it live", icon=":material/videocam:")


def home() -> None:
    ui.page_setup("Home")
    st.title("maskdet: face-mask detection studio")
    st.caption("Build a labelled face dataset, train a MobileNetV2 classifier, read its metrics, try it live, "
               "download it as ONNX.")
    pages = ui.PAGES[1:]  # the home page's board: every page but this one
    for column, (path, label, icon, description) in zip(st.columns(len(pages)), pages):
        with column:
            st.page_link(path, label=label, icon=icon)
            st.caption(description)

    store = ui.attempt(ui.store)
    summary = ui.attempt(summarize, store) if store else None
    if not summary:
        return
    st.subheader("Dataset")
    metrics = st.columns(len(summary.counts) + 1)
    for column, (label, count) in zip(metrics, summary.counts.items()):
        faces = count - summary.no_face.get(label, 0)
        column.metric(label, count, help=f"{faces} with a face found")
    total = sum(summary.counts.values())
    metrics[-1].metric("faces found", f"{total - sum(summary.no_face.values())} / {total}")
    next_step(store, summary)
    rows = run_rows(store)
    if rows:
        st.subheader("Latest runs")
        ui.runs_dataframe(rows[:5], ("run", "when", "status", "active", "accuracy", "macro_f1", "duration_s", "note"),
                          "home-runs")
    backup_section(store)


if __name__ == "__main__":  # run by Streamlit as the page
    home()
else:  # imported by `streamlit run` (or an ASGI server) for the dashboard's server
    app = st.App(__file__, **ui.server_options())
