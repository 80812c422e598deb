"""The Textual app: a view over gra_local.core and gra_local.models. It renders and sends
commands; it holds no synthesis logic of its own."""
