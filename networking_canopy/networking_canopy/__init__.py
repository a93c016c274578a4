"""networking-canopy: Neutron drives Canopy through Canopy's REST API (docs/openstack.md)."""
