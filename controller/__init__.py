"""Canopy controller: policy model, durable store, State, REST API and the Ryu application."""

import warnings

__version__ = "0.1.0"

# eventlet warns that it is deprecated when first imported; Ryu needs it (docs/ryu.md). Set here, before any of the
# package's modules imports it, so no command prints the warning (a start error is one line).
warnings.filterwarnings("ignore", message="(?s).*Eventlet is deprecated")
