"""maskdet dashboard home page (the dataset, training, metrics, models and live pages come next)."""

import streamlit as st

from maskdet.settings import load_settings
from maskdet.store import Store

st.set_page_config(page_title="maskdet", page_icon=":material/masks:", layout="wide")
st.title("maskdet: face-mask detection studio")


@st.cache_resource
def store() -> Store:
    return Store(load_settings())


counts = store().label_counts()
runs = store().runs()
columns = st.columns(len(counts) + 1)
for column, (label, count) in zip(columns, counts.items()):
    column.metric(label, count)
columns[-1].metric("training runs", len(runs))
if sum(counts.values()) == 0:
    st.info("No images yet. Import a folder or zip of class folders: `python -m maskdet import PATH`.")
elif not any(run["status"] == "succeeded" for run in runs):
    st.info("Images are in. Train a model: `python -m maskdet train`.")
else:
    latest = next(run for run in runs if run["status"] == "succeeded")
    test = (latest["metrics"] or {}).get("test") or {}
    st.success(f"Latest model {latest['id']}: test accuracy {test.get('accuracy', 0):.3f}, "
               f"macro F1 {test.get('macro_f1', 0):.3f}.")
