"""The helpers the Streamlit pages share, one import for a page: `import ui`."""

from ui.charts import CURVE_SCHEME, LINE_SCHEME, confusion_chart, curves_chart
from ui.navigation import PAGES, link, link_to_train, page_setup, sign_in
from ui.resources import classifier, detector, photo_pipeline, store
from ui.server import server_options
from ui.widgets import (PHOTO_TYPES, attempt, class_legend, class_picker, file_name, file_names, inline, literal,
                        run_caption, run_columns, runs_dataframe, set_checkboxes, show_annotated_photo, stream_gate,
                        verbatim)

__all__ = ["CURVE_SCHEME", "LINE_SCHEME", "PAGES", "PHOTO_TYPES", "attempt", "class_legend", "class_picker",
           "classifier", "confusion_chart", "curves_chart", "detector", "file_name", "file_names", "inline", "link",
           "link_to_train", "literal", "page_setup", "photo_pipeline", "run_caption", "run_columns", "runs_dataframe",
           "server_options", "set_checkboxes", "show_annotated_photo", "sign_in", "store", "stream_gate", "verbatim"]
