"""BGP EVPN federation through ExaBGP (see the EVPN issue)."""
