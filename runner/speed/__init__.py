"""Serve-time speed: the event loop and HTTP parser the server runs on (`engine`)."""
