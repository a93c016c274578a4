"""Hand-over from the ``canopy run`` command to the Ryu application that ryu-manager instantiates.

ryu-manager builds applications itself, so the validated Settings are parked here before it starts.
"""

SETTINGS = None
DATA_LOCK = None  # the open lock file of the data directory (controller/storeguard.py), held while running
