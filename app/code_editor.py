"""A YAML editor for the New run page: monospace, line numbers, and the text sent to Python as
it is typed (after a pause of `DEBOUNCE_MS`), so the page validates without a blur or
Ctrl+Enter.

It is an inline ``st.components.v2`` component (HTML, CSS and JavaScript in this file, nothing
fetched, no extra package). Python owns the text: the page passes it in ``data`` with a
``version`` that changes whenever the page replaces the text (a load, a form change); the
editor then shows it. What the person types comes back as the component's ``text`` state. While
the editor holds text that the page has not validated yet, its status line says so
("edited — validating…") and the box is outlined: the result shown above is then stale.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

DEBOUNCE_MS = 350
STATUS_VALIDATED = "validated"
STATUS_PENDING = "edited — validating…"

_HTML = """
<div class="dsde-editor" data-testid="dsde-editor">
  <div class="dsde-body">
    <pre class="dsde-gutter" aria-hidden="true"></pre>
    <textarea class="dsde-text" spellcheck="false" autocapitalize="off" autocomplete="off"
      wrap="off" aria-label="Spec (YAML)"></textarea>
  </div>
  <div class="dsde-status" data-testid="dsde-editor-status"></div>
</div>
"""

_CSS = """
.dsde-editor { font-family: "Source Code Pro", ui-monospace, SFMono-Regular, Menlo, Consolas,
  monospace; font-size: 13px; line-height: 1.45; }
.dsde-body { display: flex; height: var(--dsde-height, 460px); border: 1px solid
  rgba(49, 51, 63, 0.25); border-radius: 0.5rem; overflow: hidden; background: #fbfbfd; }
.dsde-editor.dsde-stale .dsde-body { border-color: #e8a33d; box-shadow: 0 0 0 1px #e8a33d; }
.dsde-gutter { margin: 0; padding: 8px 6px 8px 8px; min-width: 2.5em; text-align: right;
  color: #8a8f98; background: #f0f1f4; user-select: none; overflow: hidden; font: inherit;
  white-space: pre; }
.dsde-text { flex: 1; margin: 0; padding: 8px; border: 0; outline: none; resize: none;
  font: inherit; white-space: pre; overflow: auto; tab-size: 2; background: transparent;
  color: #1f2329; }
.dsde-status { font-size: 12px; color: #6b7079; padding: 2px 4px; min-height: 1.2em; }
.dsde-editor.dsde-stale .dsde-status { color: #b06d00; font-weight: 600; }
"""

_JS = f"""
export default function (component) {{
  const {{ data, setStateValue, parentElement }} = component;
  const root = parentElement.querySelector(".dsde-editor");
  const text = root.querySelector(".dsde-text");
  const gutter = root.querySelector(".dsde-gutter");
  const status = root.querySelector(".dsde-status");
  root.style.setProperty("--dsde-height", `${{data.height}}px`);
  const number = () => {{
    const lines = text.value.split("\\n").length;
    if (gutter.dataset.lines !== String(lines)) {{
      gutter.textContent = Array.from({{ length: lines }}, (_, i) => i + 1).join("\\n");
      gutter.dataset.lines = String(lines);
    }}
    gutter.scrollTop = text.scrollTop;
  }};
  const mark = () => {{
    const stale = text.value !== root.dataset.validated;
    root.classList.toggle("dsde-stale", stale);
    status.textContent = stale ? "{STATUS_PENDING}" : "{STATUS_VALIDATED}";
  }};
  if (root.dataset.version !== String(data.version)) {{
    text.value = data.text;  // the page replaced the text (a load, a form change)
    root.dataset.version = String(data.version);
  }}
  root.dataset.validated = data.text;  // the text the page has just validated
  number();
  mark();
  text.oninput = () => {{
    number();
    mark();
    clearTimeout(root.dsdeTimer);
    root.dsdeTimer = setTimeout(() => setStateValue("text", text.value), {DEBOUNCE_MS});
  }};
  // Leaving the editor (e.g. to click Launch) sends the text at once: a click within the
  // pause must launch what is on screen, not the text validated before.
  text.onblur = () => {{
    if (text.value !== root.dataset.validated) {{
      clearTimeout(root.dsdeTimer);
      setStateValue("text", text.value);
    }}
  }};
  text.onscroll = () => {{ gutter.scrollTop = text.scrollTop; }};
  text.onkeydown = (event) => {{
    if (event.key === "Tab" && !event.shiftKey) {{  // indent, as YAML wants, not leave the box
      event.preventDefault();
      text.setRangeText("  ", text.selectionStart, text.selectionEnd, "end");
      text.oninput();
    }}
  }};
}}
"""

_COMPONENT = st.components.v2.component(
    "diffsde.spec_editor", html=_HTML, css=_CSS, js=_JS, isolate_styles=False
)


def code_editor(
    text: str, *, version: int, key: str, on_change: Callable[[], None], height: int = 460
):
    """Mount the editor showing ``text``. ``version`` must change whenever the page replaces the
    text; ``on_change`` runs (before the rerun) when the person has typed something new, which
    is then ``st.session_state[key]["text"]``."""
    return _COMPONENT(
        key=key,
        data={"text": text, "version": version, "height": height},
        default={"text": text},
        on_text_change=on_change,
        height="content",
    )
