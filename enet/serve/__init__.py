"""Serving over the network (``pip install 'enet[serve]'``): the app (``app``: HTTP API, live
WebSocket, web page), the model's queue (``jobs``), answers' bytes (``answers``), and running
it under uvicorn (``server``). ``create_app`` embeds the app in another ASGI server."""
