"""Request middlewares, one concern per module; app.py decides their order."""
