"""Dashboard pages from plugins (hook ``register_pages``): each is in the sidebar after the
built-in pages and listed on the Plugins page; a page whose ``render`` raises shows the error,
naming its plugin, while the other pages keep working."""

import pathlib

import pytest
import streamlit
from streamlit.testing.v1 import AppTest

import diffsde

APP = pathlib.Path(__file__).resolve().parent.parent / "app"


class PagesPlugin:
    """A throwaway plugin with two pages: one that draws, one that raises."""

    @diffsde.hookimpl
    def register_pages(self, register):
        def hello():
            import streamlit as st

            st.header("Hello from a plugin")
            st.metric("answer", 42)

        def broken():
            raise RuntimeError("the plugin's page is broken")

        register("Hello plugin", hello, icon="👋")
        register("Broken plugin", broken)


@pytest.fixture
def plugin():
    diffsde.register_plugin(PagesPlugin(), "pages-test")
    try:
        yield
    finally:
        diffsde.unregister_plugin("pages-test")


def _one_page(title: str) -> None:
    """An app whose navigation holds only the dashboard's page titled ``title``."""
    import streamlit as st

    from app.pages import pages

    st.navigation([p for p in pages() if p.title == title]).run()


def test_plugin_pages_follow_the_built_in_ones(plugin, tmp_path, monkeypatch):
    """The sidebar is the five built-in pages, then the plugin's two, each at its own URL.
    Mutation: not adding `plugin_pages()` in app/pages.py fails this."""
    seen = []
    navigation = streamlit.navigation

    def spy(pages, **kwargs):
        seen.append([(p.title, p.url_path) for p in pages])
        return navigation(pages, **kwargs)

    monkeypatch.setattr(streamlit, "navigation", spy)
    monkeypatch.setenv("DIFFSDE_RUNS_DIR", str(tmp_path))
    at = AppTest.from_file(str(APP / "main.py"), default_timeout=60).run()
    assert not at.exception and at.title[0].value == "Runs"
    assert seen[-1] == [
        ("Runs", ""),
        ("New run", "new_run"),
        ("Monitor", "monitor"),
        ("Compare", "compare"),
        ("Plugins", "plugins"),
        ("Hello plugin", "plugin_hello_plugin"),
        ("Broken plugin", "plugin_broken_plugin"),
    ]


def test_a_plugin_page_renders(plugin):
    at = AppTest.from_function(_one_page, args=("Hello plugin",), default_timeout=60).run()
    assert not at.exception and not at.error
    assert [h.value for h in at.header] == ["Hello from a plugin"]
    assert at.metric[0].value == "42"


def test_a_raising_plugin_page_shows_its_error(plugin):
    """Mutation: dropping the try/except around ``render()`` in app/pages.py puts the exception
    on the page (at.exception) and fails this."""
    at = AppTest.from_function(_one_page, args=("Broken plugin",), default_timeout=60).run()
    assert not at.exception
    (error,) = at.error
    assert "plugin 'pages-test'" in error.value and "RuntimeError" in error.value
    assert "the plugin's page is broken" in error.value
    # the rest of the dashboard keeps working with the broken page registered
    again = AppTest.from_function(_one_page, args=("Hello plugin",), default_timeout=60).run()
    assert not again.exception and again.header[0].value == "Hello from a plugin"


def test_plugins_page_lists_plugin_pages(plugin):
    at = AppTest.from_file(str(APP / "views" / "plugins.py"), default_timeout=60).run()
    assert not at.exception
    listed = at.dataframe[-1].value  # the components first, then the pages
    assert list(listed["page"]) == ["Hello plugin", "Broken plugin"]
    assert set(listed["plugin"]) == {"pages-test"}


def test_plugins_page_without_plugin_pages():
    at = AppTest.from_file(str(APP / "views" / "plugins.py"), default_timeout=60).run()
    assert not at.exception
    assert any("No plugin adds a dashboard page" in c.value for c in at.caption)
