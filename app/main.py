"""Entry point of the dashboard: ``streamlit run app/main.py`` (what ``diffsde dashboard`` runs).

The runs directory comes from ``$DIFFSDE_RUNS_DIR`` (default ``runs``). The app keeps nothing of
its own: it reads the run store and launches runs through ``diffsde.jobs``. The sidebar holds
the built-in pages, then those plugins add (`app.pages`).
"""

import pathlib
import sys

import streamlit as st

HERE = pathlib.Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:  # `streamlit run` puts app/ on the path, not its parent
    sys.path.insert(0, str(HERE.parent))

from app.pages import pages  # noqa: E402  (after the path is set)

st.set_page_config(page_title="diffsde", layout="wide")
st.navigation(pages()).run()
