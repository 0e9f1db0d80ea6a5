"""What the pages share across sessions of this server: the store, the face detector, loaded models and photo pipelines
(Streamlit resources, made once)."""

import streamlit as st

from maskdet.core.settings import Settings, load_settings
from maskdet.data.store import Store
from maskdet.serving import media
from maskdet.serving.classifier import load_classifier
from maskdet.serving.live import LivePipeline, LiveSettings
from maskdet.vision.faces import FaceDetector


@st.cache_resource(show_spinner=False)
def _store(settings: Settings) -> Store:
    return Store(settings)


def store() -> Store:
    """The store of the current settings (one per data home, shared by all sessions of this server)."""
    return _store(load_settings())


@st.cache_resource(show_spinner="Loading the face detector...")
def detector():
    return FaceDetector()


@st.cache_resource(show_spinner="Loading the model...", max_entries=4)
def classifier(path: str, stamp: float):
    """A model file, loaded once per version of the file (stamp: its mtime)."""
    return load_classifier(path)


@st.cache_resource(show_spinner=False, max_entries=8)
def photo_pipeline(path: str, stamp: float, settings=None):
    """The pipeline that annotates photos with a model file and LiveSettings (None: the model's own), shared by all
    sessions (photos carry nothing from one to the next)."""
    model = classifier(path, stamp)
    return LivePipeline(model, media.photo_settings(settings or LiveSettings.of_model(model)))
