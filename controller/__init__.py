"""Canopy controller: policy model, durable store, State, REST API and the Ryu application."""

__version__ = "0.1.0"
