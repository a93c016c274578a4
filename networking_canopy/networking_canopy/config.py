"""The ``[canopy]`` section of Neutron's configuration (ml2_conf.ini or neutron.conf)."""

from oslo_config import cfg

OPTS = [
    cfg.StrOpt("url", default="http://127.0.0.1:8080",
               help="Canopy's REST API, e.g. https://canopy.example:8080; for a redundant pair both nodes, "
                    "separated by a comma: requests go to the active"),
    cfg.StrOpt("token", secret=True, help="Canopy's REST write token (rest.token)"),
    cfg.StrOpt("token_file", help="A file holding the token (used when token is unset)"),
    cfg.StrOpt("ca_file", help="CA bundle to check Canopy's HTTPS certificate with"),
    cfg.FloatOpt("timeout", default=10.0, help="Seconds a REST request to Canopy may take"),
    cfg.IntOpt("sync_interval", default=300, min=0,
               help="Seconds between full consistency syncs (0: only at start)"),
    cfg.IntOpt("watch_wait", default=25, min=1, max=25,
               help="Seconds one long poll of /v1/watch/vports stays open"),
    cfg.DictOpt("external_gateway_macs", default={},
                help="<Neutron external network id or name>:<MAC> of the router on that network, where Canopy sends "
                     "floating IPs' and translated traffic; optional: without it Canopy's VRSs resolve it by ARP"),
    cfg.DictOpt("host_flavours", default={},
                help="host:flavour (kvm, hyperv, esxi) for hosts whose flavour Canopy does not report"),
]

cfg.CONF.register_opts(OPTS, "canopy")


def list_opts():
    return [("canopy", OPTS)]
