"""The home page (app.py) with Streamlit's AppTest: status board and the next step for each state."""

import json
from pathlib import Path

from streamlit.testing.v1 import AppTest

from maskdet.runs.active import set_active_run
from maskdet.runs.backup import restore
from maskdet.runs.execute import execute_run
from maskdet.runs.views import RunRecord
from maskdet.training.config import TrainConfig
from tests.conftest import download_data, page_in_app, write_dataset
from tests.test_backup import content, home_at, make_project

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def run_home() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception, at.exception
    return at


def texts(elements) -> str:
    return " ".join(element.value for element in elements)


def test_empty_home_says_how_to_add_images(settings):
    at = run_home()
    assert [m.value for m in at.metric][:2] == ["0", "0"]
    assert "No images yet" in texts(at.info)


def test_after_an_import_it_suggests_training(store, detector, tmp_path):
    store.import_folder(write_dataset(tmp_path / "d", 3), detector)
    at = run_home()
    assert [m.label for m in at.metric] == ["with_mask", "without_mask", "faces found"]
    assert [m.value for m in at.metric] == ["3", "3", "0 / 6"]
    assert "ready for a first model" in texts(at.info)
    assert "Few images in with_mask (3)" in texts(at.warning)


def test_one_class_only_asks_for_a_second(store, detector, tmp_path):
    store.import_folder(write_dataset(tmp_path / "d", 3, labels=("with_mask",)), detector)
    assert "Add images of a second class" in texts(run_home().info)


def test_with_a_trained_model_it_shows_the_active_model_and_runs(store, detector, tmp_path):
    store.import_folder(write_dataset(tmp_path / "d", 6), detector)
    run_id = execute_run(store, TrainConfig(random_init=True, views_per_image=1, epochs=3, input_size=64,
                                            quantize=False), store.settings.models_dir)["run_id"]
    set_active_run(store, run_id)  # a tiny model may not beat chance, which keeps it from being active by itself
    at = run_home()
    assert f"Active model **{run_id}**" in texts(at.success)
    table = at.dataframe[0].value
    assert list(table["run"]) == [run_id] and list(table["status"]) == ["succeeded"]
    shown = json.loads(at.dataframe[0].proto.columns)  # as the Metrics page shows runs: names and formats
    assert [column for column in at.dataframe[0].proto.column_order] == [
        "run", "when", "status", "active", "accuracy", "macro_f1", "duration_s", "note"]
    assert shown["macro_f1"]["label"] == "macro F1" and shown["duration_s"]["label"] == "took"
    run = RunRecord.of(store.run(run_id))
    assert (table["accuracy"][0], table["macro_f1"][0]) == (f"{run.accuracy:.3f}", f"{run.macro_f1:.3f}")
    assert table["duration_s"][0] == f"{run.duration_s:.0f} s"


def test_a_cancelled_or_failed_run_shows_a_dash_for_its_figures_never_none(store):
    cancelled = store.create_run(TrainConfig().to_dict())
    store.update_run(cancelled, status="cancelled")
    failed = store.create_run(TrainConfig().to_dict())
    store.update_run(failed, status="failed", error="Training needs at least two classes with images.")
    at = run_home()
    assert not at.error
    table = at.dataframe[0].value.set_index("run")
    assert list(table.loc[cancelled, ["status", "accuracy", "macro_f1", "duration_s", "note"]]) == [
        "cancelled", "\u2014", "\u2014", "\u2014", "Cancelled before it finished."]
    assert list(table.loc[failed, ["accuracy", "macro_f1"]]) == ["\u2014", "\u2014"]
    assert "None" not in table.astype(str).to_string()


def test_every_page_links_all_pages_in_the_sidebar_with_home_first(settings):
    """The pages draw the sidebar's links themselves, so the home page is "Home" (Streamlit's list says "app")."""
    names = ["Home", "Dataset", "Train", "Metrics", "Models", "Live"]
    assert [link.proto.label for link in run_home().sidebar.get("page_link")] == names
    for page in ("pages/1_Dataset.py", "pages/5_Live.py"):
        at = page_in_app(page)
        assert not at.exception and [link.proto.label for link in at.sidebar.get("page_link")] == names


def test_back_up_this_project_downloads_an_archive_that_restores(store, tmp_path, downloads):
    run_id, failed = make_project(store, tmp_path)
    at = run_home()
    assert "Back up this project" in [header.value for header in at.subheader]
    assert at.multiselect(key="backup-runs").value == [run_id, failed] and not at.download_button
    at.button(key="backup-start").click().run()
    assert not at.exception and not at.error
    assert "Backup ready: 8 images in 2 classes and 2 of 2 runs" in texts(at.success)
    name, data = download_data(at, downloads)["Download backup"]
    assert name.startswith("maskdet-backup-") and name.endswith(".zip")
    restored = home_at(tmp_path / "restored")
    assert restore(restored, data)["active_run"] == run_id
    assert content(restored) == content(store)

    at.multiselect(key="backup-runs").set_value([failed]).run()  # another choice: the old download goes
    assert not at.download_button
    at.button(key="backup-start").click().run()
    assert "Backup ready: 8 images in 2 classes and 1 of 2 runs" in texts(at.success)
