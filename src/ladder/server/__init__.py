"""The server: the hub and one thin driver per transport."""
