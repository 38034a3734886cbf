"""The Gradio workbench UI: build_ui(engine, settings) and mount_ui(app, engine, settings).

Importing this package imports gradio; nothing in workbench imports it eagerly.
"""

from workbench.ui.app import UI_PATH, build_ui, mount_ui

__all__ = ["UI_PATH", "build_ui", "mount_ui"]
