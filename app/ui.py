"""Streamlit pieces shared by the pages (page bodies stay thin; data functions live in data.py)."""

import streamlit as st

from app.data import run_stamps, runs_dir_from_env


def run_store(title: str) -> tuple[str, list[tuple[str, float]]]:
    """Page title, the run store's location, and (path, mtime) of each run; stops the page with
    a clear message when the store does not exist."""
    runs_dir = runs_dir_from_env()
    st.title(title)
    st.caption(f"run store: `{runs_dir}`")
    try:
        return runs_dir, run_stamps(runs_dir)
    except FileNotFoundError as err:
        st.error(str(err))
        st.stop()
