"""Which owners have flows on a switch (openflow/compiler.py compiles them): the switch itself, the subnets and
domains it serves, every endpoint of a subnet it reaches (its own subnets, and every subnet of a domain it serves),
and the owners of the security policy, external networks and the metadata service (their own modules say where)."""

from __future__ import annotations

from itertools import compress
from operator import itemgetter, not_

from controller.derive import View
from openflow import acl, activation, external, metadata
from openflow.flows import Owner


def present(view: View, session: str, owner: Owner) -> bool:
    """Whether an owner has flows on this switch (the same rule as owners_of, for one owner)."""
    if owner.kind in ENDPOINT_KINDS:  # the most of a big delta's owners: asked first
        return _endpoint_present(view, session, owner)
    if owner.kind == "switch":
        return owner.id == session
    if owner.kind == "subnet":
        return owner.id in view.subnets_on(session)
    if owner.kind == "domain":
        return owner.id in view.domains_on(session)
    if owner.kind in acl.OWNER_KINDS:  # security policy: openflow/acl.py
        return acl.present(view, session, owner)
    if owner.kind in external.OWNER_KINDS:  # external networks: openflow/external.py
        return external.present(view, session, owner)
    if owner.kind in metadata.OWNER_KINDS:  # the metadata service: openflow/metadata.py
        return metadata.present(view, session, owner)
    if owner.kind in activation.OWNER_KINDS:  # a live migration's standby ports: openflow/activation.py
        return activation.present(view, session, owner)
    return _endpoint_present(view, session, owner)


ENDPOINT_KINDS = frozenset({"vport", "vtep_mac", "evpn"})  # the owners of endpoints (derive.Endpoint.kind)
_KIND, _ID = itemgetter(0), itemgetter(1)  # an Owner's fields (a NamedTuple), read in C


def gone_endpoints(view: View, owners: list) -> list:
    """Those of ``owners`` (a list) of an endpoint's kind whose endpoint the view no longer has: present on no switch
    (``present``: False), found by C loops (10,000 vports' ports gone: 10,000 owners compiled to nothing, ~50
    bytecodes each asked one at a time)."""
    missing = list(compress(owners, map(not_, map(view.endpoints.__contains__, map(_ID, owners)))))
    return list(compress(missing, map(ENDPOINT_KINDS.__contains__, map(_KIND, missing))))


def _endpoint_present(view: View, session: str, owner: Owner) -> bool:
    """An endpoint's owner: on its own switch and on those its subnet or the subnet's domain is on. A vport turning
    bare metal or back keeps its id and changes kind: the owner of the kind it was has no flows any more (it had the
    new endpoint's flows filed under it as well, under its cookie)."""
    ep = view.endpoints.get(owner.id)
    if ep is None or ep.kind != owner.kind:
        return False
    sub = view.subnets.get(ep.subnet_id)
    return ep.session == session or ep.subnet_id in view.subnets_on(session) or \
        bool(sub and sub.domain_id in view.domains_on(session))


def owners_of(view: View, session: str) -> set[Owner]:
    """Every owner with flows on this switch."""
    subnets = view.subnets_on(session)
    domains = view.domains_on(session)
    owners = {Owner("switch", session)} | {Owner("subnet", s) for s in subnets} | \
             {Owner("domain", d) for d in domains}
    reached = set(subnets)  # local endpoints are always in a subnet on the switch
    for dom in domains:
        reached.update(view.subnets_of_domain(dom))
    for sid in reached:
        owners.update(ep.owner for ep in view.by_subnet.get(sid, ()))
    owners |= acl.owners_on(view, session)  # security policy: openflow/acl.py
    owners |= external.owners_on(view, session)  # external networks: openflow/external.py
    owners |= metadata.owners_on(view, session)  # the metadata service: openflow/metadata.py
    owners |= activation.owners_on(view, session)  # a live migration's standby ports: openflow/activation.py
    return owners
