"""The os-ken VPC router app: a thin adapter from `vpc_core` flow specs to OpenFlow 1.3.

All switch I/O happens in the app's own event loop thread (like faucet, one thread owns
the state). Other threads talk to it through `set_state`, `flow_stats` and `barrier`,
which post events and wait for their completion.

On connect the app reads the port table, the installed flows and the installed groups,
then sends only the difference to the desired ones (`vpc_sync.plan_sync`): a restarted
controller reinstalls what is missing and leaves working flows untouched (OVS keeps them
while the controller is away, since the bridges are fail-secure; conntrack entries stay
too). A controller without a desired state yet (just restarted, before the cloud
controller's next push) touches nothing: the switch stays connected but not ready, and
is reconciled when the state arrives. Cookies and group ids are content hashes, so
"installed" and "desired" are compared without parsing flows back. Order of a sync: new
groups, flow adds, flow deletes, group deletes, barrier (a flow never points at a
missing group).
"""
from __future__ import annotations

import ipaddress
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from os_ken.base import app_manager
from os_ken.controller import event, ofp_event
from os_ken.controller.controller import Datapath
from os_ken.controller.handler import CONFIG_DISPATCHER, DEAD_DISPATCHER, MAIN_DISPATCHER, set_ev_cls
from os_ken.ofproto import nicira_ext, ofproto_v1_3

from emulator.errors import KubemuError, Timeout

from controllers.vpc_core import IN_PORT, FlowSpec, GroupSpec, VpcState, compute
from controllers.vpc_sync import ADD_FLOW, ADD_GROUP, DELETE_FLOW, Change, plan_sync, summary

ofp = ofproto_v1_3
APP_NAME = "VpcRouterApp"
_ALL_ONES = 0xFFFFFFFFFFFFFFFF
_MASKABLE = {"ipv4_src", "ipv4_dst", "arp_spa", "arp_tpa"}


class EventCall(event.EventBase):
    """Run `fn(app)` in the app's event loop thread; the caller waits on `done`."""

    def __init__(self, fn: Callable[["VpcRouterApp"], Any]) -> None:
        super().__init__()
        self.fn = fn
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


@dataclass
class _Switch:
    """What the app knows about one connected bridge."""

    dp: Datapath
    dpid: int
    ports: dict[str, int] = field(default_factory=dict)
    installed: dict[int, FlowSpec | None] = field(default_factory=dict)  # cookie -> spec
    groups: dict[int, GroupSpec | None] = field(default_factory=dict)    # group id -> spec
    read: bool = False    # its tables are known: reconcile when a state is there
    ready: bool = False


@dataclass
class _Pending:
    """A multipart request or barrier waiting for its reply (by xid)."""

    on_done: Callable[[list[Any]], None]
    body: list[Any] = field(default_factory=list)
    on_dead: Callable[[], None] | None = None   # the switch went away before answering


class VpcRouterApp(app_manager.OSKenApp):
    """GCP VPC stand-in: answers ARP for gateways, routes endpoints' IPs and ranges, enforces
    firewall rules and forwards load balancers' traffic (see `controllers.vpc_core`)."""

    OFP_VERSIONS = [ofp.OFP_VERSION]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.name = APP_NAME
        self.state: VpcState | None = None
        self.switches: dict[int, _Switch] = {}
        self._pending: dict[tuple[int, int], _Pending] = {}
        self._ready_cond = threading.Condition()
        self.changes_sent: dict[int, int] = {}   # dpid -> flow and group mods sent since start

    # --- calls from other threads ---
    def call(self, fn: Callable[["VpcRouterApp"], Any], timeout: float = 10.0) -> Any:
        """Run `fn(self)` in the event loop thread and return its result."""
        ev = EventCall(fn)
        self.send_event(self.name, ev)
        if not ev.done.wait(timeout):
            raise Timeout("the VPC router app did not answer")
        if ev.error is not None:
            raise ev.error
        return ev.result

    @set_ev_cls(EventCall)
    def _on_call(self, ev: EventCall) -> None:
        """Run a posted call in this thread; hand back its result or error."""
        try:
            ev.result = ev.fn(self)
        except BaseException as exc:  # handed to the waiting thread
            ev.error = exc
        finally:
            ev.done.set()

    def set_state(self, state: VpcState, timeout: float = 10.0) -> None:
        """Adopt a new desired state; returns once every ready switch confirmed the changes."""
        waits: list[threading.Event] = self.call(lambda app: app._apply_state(state), timeout)
        for w in waits:
            w.wait(timeout)

    def _apply_state(self, state: VpcState) -> list[threading.Event]:
        """Store the state and sync every ready switch; returns their barrier events."""
        self.state = state
        waits = [self._sync(sw) for sw in self.switches.values() if sw.ready]
        for sw in [sw for sw in self.switches.values() if sw.read and not sw.ready]:  # waited for a state
            waits.append(self._sync(sw, on_done=lambda sw=sw: self._mark_ready(sw)))
        return waits

    def ready_dpids(self) -> list[int]:
        """Datapaths that are connected and carry the current flows."""
        return sorted(d for d, sw in list(self.switches.items()) if sw.ready)

    def wait_ready(self, dpids: list[int], timeout: float) -> bool:
        """Block until every dpid is ready; False on timeout."""
        with self._ready_cond:
            return self._ready_cond.wait_for(lambda: set(dpids) <= set(self.ready_dpids()), timeout)

    def flow_stats(self, dpid: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Counters of every flow on one bridge, with the note of the spec that made it."""
        return self._stats(dpid, lambda dp: dp.ofproto_parser.OFPFlowStatsRequest(dp),
                           lambda sw, s: self._stat_dict(sw, s), timeout)

    def group_stats(self, dpid: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Counters of every group on one bridge and of each bucket, named by the specs."""
        return self._stats(dpid, lambda dp: dp.ofproto_parser.OFPGroupStatsRequest(dp, 0, ofp.OFPG_ALL),
                           lambda sw, s: self._group_dict(sw, s), timeout)

    def _stats(self, dpid: int, make: Callable[[Datapath], Any], convert: Callable[[_Switch, Any], Any],
               timeout: float) -> list[Any]:
        """Send a multipart stats request from the app thread and wait for the converted body."""
        done = threading.Event()
        out: list[Any] = []

        def request(app: "VpcRouterApp") -> None:
            sw = app.switches.get(dpid)
            if sw is None:
                raise KubemuError(f"datapath {dpid:#x} is not connected")

            def finish(body: list[Any]) -> None:
                out.extend(convert(sw, s) for s in body)
                done.set()
            app._request(sw, make(sw.dp), finish)

        self.call(request, timeout)
        if not done.wait(timeout):
            raise Timeout(f"no stats from datapath {dpid:#x}")
        return out

    # --- switch lifecycle ---
    @set_ev_cls(ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER)
    def _on_features(self, ev: Any) -> None:
        """A switch connected: read its ports, then its flows, then reconcile."""
        dp = ev.msg.datapath
        dpid = ev.msg.datapath_id
        sw = _Switch(dp, dpid)
        self.switches[dpid] = sw
        self.logger.info("datapath %016x connected", dpid)
        self._request(sw, dp.ofproto_parser.OFPPortDescStatsRequest(dp, 0),
                      lambda body: self._on_port_desc(sw, body))

    def _on_port_desc(self, sw: _Switch, body: list[Any]) -> None:
        """Port names -> numbers known; now read what flows the switch already has."""
        sw.ports = {_name(p): p.port_no for p in body if p.port_no < ofp.OFPP_MAX}
        self._request(sw, sw.dp.ofproto_parser.OFPFlowStatsRequest(sw.dp),
                      lambda flows: self._on_flows(sw, flows))

    def _on_flows(self, sw: _Switch, flows: list[Any]) -> None:
        """Installed flows known; now read the installed groups."""
        sw.installed = {f.cookie: None for f in flows}
        self._request(sw, sw.dp.ofproto_parser.OFPGroupDescStatsRequest(sw.dp, 0),
                      lambda groups: self._on_reconcile(sw, groups))

    def _on_reconcile(self, sw: _Switch, groups: list[Any]) -> None:
        """Send only the difference to what is installed; ready once the barrier returns."""
        sw.groups = {g.group_id: None for g in groups}
        sw.read = True
        if self.state is None:   # just (re)started: keep the switch's flows until the state comes
            self.logger.info("datapath %016x: %d flows, %d groups kept until a state arrives",
                             sw.dpid, len(sw.installed), len(sw.groups))
            return
        self._sync(sw, on_done=lambda: self._mark_ready(sw))

    def _mark_ready(self, sw: _Switch) -> None:
        """The switch carries the current flows: wake `wait_ready` callers."""
        sw.ready = True
        self.logger.info("datapath %016x ready (%d flows)", sw.dpid, len(sw.installed))
        with self._ready_cond:
            self._ready_cond.notify_all()

    @set_ev_cls(ofp_event.EventOFPPortStatus, MAIN_DISPATCHER)
    def _on_port_status(self, ev: Any) -> None:
        """A port came, changed or went: update the name map and resync."""
        msg = ev.msg
        sw = self.switches.get(msg.datapath.id)
        if sw is None:
            return
        name = _name(msg.desc)
        if msg.reason == ofp.OFPPR_DELETE:
            sw.ports.pop(name, None)
        else:
            sw.ports[name] = msg.desc.port_no
        if sw.ready:
            self._sync(sw)

    @set_ev_cls(ofp_event.EventOFPStateChange, DEAD_DISPATCHER)
    def _on_dead(self, ev: Any) -> None:
        """A switch disconnected: forget it and its pending requests."""
        dp = ev.datapath
        for dpid, sw in list(self.switches.items()):
            if sw.dp is dp:
                del self.switches[dpid]
                self.logger.info("datapath %016x disconnected", dpid)
        for key in [k for k in self._pending if k[0] == id(dp)]:
            pending = self._pending.pop(key)
            if pending.on_dead is not None:   # release who waits for it (a set_state's barrier)
                pending.on_dead()

    # --- replies ---
    def _request(self, sw: _Switch, msg: Any, on_done: Callable[[list[Any]], None],
                 on_dead: Callable[[], None] | None = None) -> None:
        """Send a multipart request or barrier and call `on_done(body)` with the full reply
        (or `on_dead()` if the switch disconnects first)."""
        sw.dp.set_xid(msg)
        self._pending[(id(sw.dp), msg.xid)] = _Pending(on_done, on_dead=on_dead)
        sw.dp.send_msg(msg)

    def _reply(self, msg: Any, body: list[Any], more: bool) -> None:
        """Collect a (possibly multi-part) reply and complete its request."""
        key = (id(msg.datapath), msg.xid)
        pending = self._pending.get(key)
        if pending is None:
            return
        pending.body.extend(body)
        if not more:
            del self._pending[key]
            pending.on_done(pending.body)

    @set_ev_cls(ofp_event.EventOFPPortDescStatsReply, MAIN_DISPATCHER)
    def _on_port_desc_reply(self, ev: Any) -> None:
        self._reply(ev.msg, list(ev.msg.body), bool(ev.msg.flags & ofp.OFPMPF_REPLY_MORE))

    @set_ev_cls(ofp_event.EventOFPFlowStatsReply, MAIN_DISPATCHER)
    def _on_flow_stats_reply(self, ev: Any) -> None:
        self._reply(ev.msg, list(ev.msg.body), bool(ev.msg.flags & ofp.OFPMPF_REPLY_MORE))

    @set_ev_cls(ofp_event.EventOFPGroupDescStatsReply, MAIN_DISPATCHER)
    def _on_group_desc_reply(self, ev: Any) -> None:
        self._reply(ev.msg, list(ev.msg.body), bool(ev.msg.flags & ofp.OFPMPF_REPLY_MORE))

    @set_ev_cls(ofp_event.EventOFPGroupStatsReply, MAIN_DISPATCHER)
    def _on_group_stats_reply(self, ev: Any) -> None:
        self._reply(ev.msg, list(ev.msg.body), bool(ev.msg.flags & ofp.OFPMPF_REPLY_MORE))

    @set_ev_cls(ofp_event.EventOFPBarrierReply, MAIN_DISPATCHER)
    def _on_barrier_reply(self, ev: Any) -> None:
        self._reply(ev.msg, [], False)

    @set_ev_cls(ofp_event.EventOFPErrorMsg, MAIN_DISPATCHER)
    def _on_error(self, ev: Any) -> None:
        """Log OpenFlow errors (a rejected flow_mod means a bug in the core or adapter)."""
        msg = ev.msg
        self.logger.error("datapath %s error type=%s code=%s", msg.datapath.id, msg.type, msg.code)

    # --- flow programming ---
    def _sync(self, sw: _Switch, on_done: Callable[[], None] | None = None) -> threading.Event:
        """Send the difference between installed and desired flows and groups, then a barrier."""
        if self.state is None:
            raise KubemuError("no desired state to reconcile with")
        program = compute(self.state, sw.dpid, sw.ports)
        changes = plan_sync(sw.installed, sw.groups, program.flows, program.groups) or []
        for change in changes:
            sw.dp.send_msg(change_msg(sw.dp, change))
        self.changes_sent[sw.dpid] = self.changes_sent.get(sw.dpid, 0) + len(changes)
        if changes:
            self.logger.info("datapath %016x: %s", sw.dpid, summary(changes))
        sw.installed = {f.cookie: f for f in program.flows}
        sw.groups = {g.group_id: g for g in program.groups}
        done = threading.Event()

        def finish(_: list[Any]) -> None:
            if on_done is not None:
                on_done()
            done.set()
        self._request(sw, sw.dp.ofproto_parser.OFPBarrierRequest(sw.dp), finish, on_dead=done.set)
        return done

    def _stat_dict(self, sw: _Switch, stat: Any) -> dict[str, Any]:
        """One flow's counters as a JSON-able dict, named by the spec that made it."""
        spec = sw.installed.get(stat.cookie)
        return {"table": stat.table_id, "priority": stat.priority, "cookie": stat.cookie,
                "match": {k: _plain(v) for k, v in stat.match.items()},
                "packets": stat.packet_count, "bytes": stat.byte_count,
                "note": spec.note if spec is not None else ""}

    def _group_dict(self, sw: _Switch, stat: Any) -> dict[str, Any]:
        """One group's counters, per bucket too, named by the spec (LB name, backend names)."""
        spec = sw.groups.get(stat.group_id)
        notes = spec.bucket_notes if spec is not None else ()
        n = len(spec.buckets) if spec is not None else len(stat.bucket_stats)
        buckets = [{"note": notes[i] if i < len(notes) else "", "packets": 0, "bytes": 0} for i in range(n)]
        for i, b in enumerate(stat.bucket_stats):   # fold the copies (see bucket_copies)
            buckets[i % n]["packets"] += b.packet_count
            buckets[i % n]["bytes"] += b.byte_count
        return {"group_id": stat.group_id, "name": spec.name if spec is not None else "",
                "packets": stat.packet_count, "bytes": stat.byte_count, "buckets": buckets}


def _name(port: Any) -> str:
    """A port's name as str (os-ken gives bytes)."""
    name = port.name
    return name.decode(errors="replace") if isinstance(name, bytes) else str(name)


def _plain(value: Any) -> Any:
    """A match value in JSON-able form."""
    return list(value) if isinstance(value, tuple) else value


def ofp_match(dp: Datapath, match: dict[str, Any]) -> Any:
    """OFPMatch from a spec's match dict (`a.b.c.d/len` -> (address, netmask))."""
    fields: dict[str, Any] = {}
    for key, value in match.items():
        if key in _MASKABLE and isinstance(value, str) and "/" in value:
            net = ipaddress.IPv4Network(value, strict=False)
            value = (str(net.network_address), str(net.netmask))
        fields[key] = value
    return dp.ofproto_parser.OFPMatch(**fields)


def ofp_action(dp: Datapath, action: tuple[Any, ...]) -> Any:
    """One OpenFlow action from a spec's action tuple (not `goto`, which is an instruction)."""
    parser = dp.ofproto_parser
    kind = action[0]
    if kind == "output":
        return parser.OFPActionOutput(ofp.OFPP_IN_PORT if action[1] == IN_PORT else action[1], 0)
    if kind == "set_field":
        return parser.OFPActionSetField(**{action[1]: action[2]})
    if kind == "move":
        return parser.NXActionRegMove(src_field=action[1], dst_field=action[2], n_bits=action[3])
    if kind == "dec_ttl":
        return parser.OFPActionDecNwTtl()
    if kind == "group":
        return parser.OFPActionGroup(action[1])
    if kind == "resubmit":
        return parser.NXActionResubmitTable(table_id=action[1])  # in_port: 0xfff8, keep it
    if kind == "ct":
        _, commit, zone, table, mark = action
        if isinstance(zone, str):  # the zone is a register's low 16 bits
            zone_src, zone_value = zone, nicira_ext.ofs_nbits(0, 15)
        else:
            zone_src, zone_value = "", zone
        inner = [parser.OFPActionSetField(ct_mark=mark)] if mark is not None else []
        return parser.NXActionCT(flags=nicira_ext.NX_CT_F_COMMIT if commit else 0, zone_src=zone_src,
                                 zone_ofs_nbits=zone_value,
                                 recirc_table=nicira_ext.NX_CT_RECIRC_NONE if table is None else table,
                                 alg=0, actions=inner)
    raise ValueError(f"unknown action {action!r}")


def ofp_instructions(dp: Datapath, actions: tuple[tuple[Any, ...], ...]) -> list[Any]:
    """Apply-actions plus an optional goto_table from a spec's action tuples."""
    parser = dp.ofproto_parser
    applied = [ofp_action(dp, a) for a in actions if a[0] != "goto"]
    gotos = [a[1] for a in actions if a[0] == "goto"]
    inst: list[Any] = []
    if applied:
        inst.append(parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, applied))
    if gotos:
        inst.append(parser.OFPInstructionGotoTable(gotos[-1]))
    return inst


DP_HASH_SLOTS = 256   # OVS 3.1 dp_hash select groups: max(16, 2^ceil(log2 n)) hash slots, at most 256


def bucket_copies(n: int) -> int:
    """How often each bucket is repeated in the switch so that OVS's dp_hash slots split evenly.

    OVS maps a select group's n equal buckets onto max(16, next power of two >= n) hash
    slots: 6 buckets get 3,3,3,3,2,2 of 16 slots, i.e. 18.8% against 12.5% of the new
    connections. Repeating each bucket k = 256 // n times, interleaved, makes 128 < k*n
    <= 256 buckets on 256 slots: every backend within one slot (0.4%) of 1/n.
    """
    return 1 if n & (n - 1) == 0 else DP_HASH_SLOTS // n


def group_mod(dp: Datapath, group: GroupSpec) -> Any:
    """OFPGC_ADD of a SELECT group (no selection method: OVS picks dp_hash, see vpc_lb);
    the buckets are repeated `bucket_copies` times, interleaved, for an even spread."""
    parser = dp.ofproto_parser
    one = [parser.OFPBucket(weight=1, watch_port=ofp.OFPP_ANY, watch_group=ofp.OFPG_ANY,
                            actions=[ofp_action(dp, a) for a in bucket]) for bucket in group.buckets]
    buckets = one * bucket_copies(len(one))
    return parser.OFPGroupMod(dp, ofp.OFPGC_ADD, ofp.OFPGT_SELECT, group.group_id, buckets)


def change_msg(dp: Datapath, change: Change) -> Any:
    """The OpenFlow message for one `vpc_sync.Change`."""
    if change.kind == ADD_GROUP:
        return group_mod(dp, change.spec)
    if change.kind == ADD_FLOW:
        return flow_mod(dp, change.spec)
    if change.kind == DELETE_FLOW:
        return delete_by_cookie(dp, change.ident)
    return delete_group(dp, change.ident)


def delete_group(dp: Datapath, group_id: int) -> Any:
    """OFPGC_DELETE of one group (OVS also deletes flows still pointing at it)."""
    return dp.ofproto_parser.OFPGroupMod(dp, ofp.OFPGC_DELETE, ofp.OFPGT_SELECT, group_id, [])


def flow_mod(dp: Datapath, flow: FlowSpec) -> Any:
    """OFPFC_ADD for a spec (replaces a flow in the same slot)."""
    return dp.ofproto_parser.OFPFlowMod(
        dp, cookie=flow.cookie, table_id=flow.table, command=ofp.OFPFC_ADD,
        priority=flow.priority, match=ofp_match(dp, dict(flow.match)),
        instructions=ofp_instructions(dp, flow.actions))


def delete_by_cookie(dp: Datapath, cookie: int) -> Any:
    """OFPFC_DELETE of exactly the flows carrying this cookie, in any table."""
    return dp.ofproto_parser.OFPFlowMod(
        dp, cookie=cookie, cookie_mask=_ALL_ONES, table_id=ofp.OFPTT_ALL, command=ofp.OFPFC_DELETE,
        out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY, match=dp.ofproto_parser.OFPMatch())
