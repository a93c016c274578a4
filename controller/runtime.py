"""Hand-over from the ``canopy run`` command to the Ryu application that ryu-manager instantiates.

ryu-manager builds applications itself, so the validated Settings are parked here before it starts.
"""

SETTINGS = None
API = None  # the running controller.rest.api.Api (SIGHUP swaps its settings: controller.lifecycle)
