"""`steervit serve`: a small local web app to try steering on an image (see docs/serve.md).

Importing this package costs nothing; FastAPI, uvicorn and torch load only when the app is built.
"""
