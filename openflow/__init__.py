"""OpenFlow pipeline, compiler and reconciler (see the dataplane issue)."""
