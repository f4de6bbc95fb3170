"""The Gradio demo of ``python app.py``: one tab per capability (:mod:`demo.tabs`), put together by :mod:`demo.app`."""
