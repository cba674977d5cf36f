"""The dashboard's pages: the built-in views, then one per page that plugins add (hook
``register_pages``, collected in ``diffsde.get_registry().pages``). A plugin page whose
``render`` raises shows the error, naming its plugin, and every other page keeps working."""

import pathlib
import re

import streamlit as st
from streamlit.errors import StreamlitAPIException

from diffsde import get_registry

VIEWS = pathlib.Path(__file__).resolve().parent / "views"
BUILT_IN = (
    ("runs.py", "Runs"),
    ("new_run.py", "New run"),
    ("monitor.py", "Monitor"),
    ("compare.py", "Compare"),
    ("plugins.py", "Plugins"),
)


def plugin_page(page, url_path: str) -> st.Page:
    """A `st.Page` drawing ``page.render()``; an exception from it is shown on the page."""

    def render() -> None:
        try:
            page.render()
        except Exception as err:  # a plugin's bug stays on its own page
            st.error(
                f"The page {page.title!r} of plugin '{page.plugin}' (distribution "
                f"'{page.distribution}') failed: {type(err).__name__}: {err}"
            )

    try:
        return st.Page(render, title=page.title, icon=page.icon, url_path=url_path)
    except StreamlitAPIException:  # an icon Streamlit does not take: go without
        return st.Page(render, title=page.title, url_path=url_path)


def plugin_pages() -> list[st.Page]:
    """One `st.Page` per page in ``diffsde.get_registry().pages``, each at its own URL."""
    pages, used = [], {path.removesuffix(".py") for path, _ in BUILT_IN}
    for page in get_registry().pages:
        slug = re.sub(r"[^a-z0-9]+", "_", page.title.lower()).strip("_") or "page"
        url_path, n = f"plugin_{slug}", 1
        while url_path in used:
            n += 1
            url_path = f"plugin_{slug}_{n}"
        used.add(url_path)
        pages.append(plugin_page(page, url_path))
    return pages


def pages() -> list[st.Page]:
    """Every page of the sidebar: the built-in ones (Runs first, the default), then plugins'."""
    built_in = [
        st.Page(VIEWS / path, title=title, default=i == 0)
        for i, (path, title) in enumerate(BUILT_IN)
    ]
    return built_in + plugin_pages()
