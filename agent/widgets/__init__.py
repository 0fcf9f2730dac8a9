"""The widgets of the `nanocode chat` app, one per module; agent/app.py composes them."""
