"""Entry point of the dashboard: ``streamlit run app/main.py`` (what ``diffsde dashboard`` runs).

The runs directory comes from ``$DIFFSDE_RUNS_DIR`` (default ``runs``). The app keeps nothing of
its own: it reads the run store and launches runs through ``diffsde.jobs``.
"""

import pathlib
import sys

import streamlit as st

HERE = pathlib.Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:  # `streamlit run` puts app/ on the path, not its parent
    sys.path.insert(0, str(HERE.parent))

st.set_page_config(page_title="diffsde", layout="wide")
navigation = st.navigation(
    [
        st.Page(HERE / "views" / "runs.py", title="Runs", default=True),
        st.Page(HERE / "views" / "new_run.py", title="New run"),
        st.Page(HERE / "views" / "monitor.py", title="Monitor"),
        st.Page(HERE / "views" / "compare.py", title="Compare"),
        st.Page(HERE / "views" / "plugins.py", title="Plugins"),
    ]
)
navigation.run()
