"""OVSDB sessions: the manager listener, VRS discovery and (later) hardware_vtep programming."""
