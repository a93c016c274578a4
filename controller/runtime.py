"""Hand-over from the ``canopy run`` command to the Ryu application that ryu-manager instantiates.

ryu-manager builds applications itself, so the validated Settings are parked here before it starts.
"""

SETTINGS = None
STOPPING = False  # set when the controller stops in order (an operator's interrupt): threads ending is expected
FATAL = None  # the reason an essential part stopped (controller.guard.fatal), else None
MAIN_GREENLET = None  # the greenlet running the controller's main loop (gets SystemExit on a fatal error)
API = None  # the running controller.rest.api.Api (SIGHUP swaps its settings: controller.lifecycle)
FEDERATION = None  # the running bgp.federation.Federation, if BGP is on (SIGHUP restarts a failed speaker with its bgp)
DATA_LOCK = None  # the open lock file of the data directory (controller/storeguard.py), held while running
STORE_ACCEPTED = False  # canopy run --accept-store took a refused store: switches are made to match it at once
