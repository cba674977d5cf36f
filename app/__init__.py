"""The diffsde dashboard (Streamlit): ``diffsde dashboard [--runs-dir DIR] [--port P]``."""
