"""Switch reconciliation, pure: from what a bridge holds to what it should hold, in a hitless order.

A switch's tables are known by their cookies and group ids, both content hashes (see
`vpc_types`): equal id, equal content. So reconciling is a set difference, and a
"modified" flow is an add of the new content into the same slot (OpenFlow's ADD replaces
the entry with the same table, priority and match in place: no gap) followed by a delete
of the old cookie, which then finds nothing. Order of the changes:

1. new groups (before any flow can point at them);
2. flow adds (replacing changed flows in place; select flows move to their new group);
3. flow deletes by cookie (only stale ones);
4. group deletes (no flow points at them any more; OVS would delete such flows too).

No desired state (a controller that just started and has not heard from the cloud
controller yet) means *touch nothing*: the switch keeps forwarding on its flows. A
never-programmed switch must wait for the state too, since an empty state would only
install drops.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from controllers.vpc_core import diff_flows, diff_groups
from controllers.vpc_types import FlowSpec, GroupSpec

ADD_GROUP, ADD_FLOW, DELETE_FLOW, DELETE_GROUP = "add_group", "add_flow", "delete_flow", "delete_group"


@dataclass(frozen=True)
class Change:
    """One OpenFlow change: `spec` for adds, `ident` (cookie or group id) for deletes."""

    kind: str
    spec: FlowSpec | GroupSpec | None = None
    ident: int = 0


def plan_sync(installed_cookies: Iterable[int], installed_groups: Iterable[int],
              flows: Iterable[FlowSpec] | None, groups: Iterable[GroupSpec] = ()) -> list[Change] | None:
    """The ordered changes from the installed cookies/group ids to `flows`/`groups`;
    None when there is no desired state yet (`flows` None): leave the switch alone."""
    if flows is None:
        return None
    flows, groups = list(flows), list(groups)
    fdiff, gdiff = diff_flows(installed_cookies, flows), diff_groups(installed_groups, groups)
    out = [Change(ADD_GROUP, g) for g in gdiff.add] + [Change(ADD_FLOW, f) for f in fdiff.add]
    out += [Change(DELETE_FLOW, ident=c) for c in fdiff.delete]
    out += [Change(DELETE_GROUP, ident=i) for i in gdiff.delete]
    return out


def summary(changes: list[Change]) -> str:
    """`+A -D flows, +G -H groups` for logs."""
    n = {k: sum(1 for c in changes if c.kind == k) for k in (ADD_FLOW, DELETE_FLOW, ADD_GROUP, DELETE_GROUP)}
    return f"+{n[ADD_FLOW]} -{n[DELETE_FLOW]} flows, +{n[ADD_GROUP]} -{n[DELETE_GROUP]} groups"
