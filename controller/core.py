"""Assemble the framework-free core (store, State, policy service) from Settings."""

from __future__ import annotations

from controller.policy import Policy
from controller.service import PolicyService
from controller.settings import Settings
from controller.state import State
from controller.state_activation import ACTIVE_KEY
from controller.store import Store
from controller.storefile import DEFER_BOUND


def build_core(settings: Settings):
    """Store, State and PolicyService for these settings; the Ryu app and the tests both use it. A store
    that is not safe to serve raises StoreRefused (``canopy run`` checks first and says so in one line)."""
    store = Store(settings.data_dir, renewal_wait=settings.ha.store_renewal_wait if settings.ha else DEFER_BOUND)
    state = State(Policy(store.load_objects()), settings.default_flavour, store.last_seq(), settings.hosts)
    state.load_active(store.get_meta(ACTIVE_KEY))  # live migrations in flight before a restart
    service = PolicyService(store, state, settings)
    return store, state, service
