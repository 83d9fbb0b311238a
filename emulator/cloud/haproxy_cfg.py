"""Render the L7 load balancers of every Ingress as one haproxy.cfg (pure: text out).

One frontend per Ingress address (port 80, and 443 with its certificates when the
Ingress has `tls`), host and path ACLs in GKE's URL map order, a 404 default backend,
one backend per Service port with HTTP health checks, `X-Forwarded-For` as GFE writes it
(`<client>,<load balancer IP>`), Cloud Armor rules and IAP as `http-request` rules of the
backend (armor first, as in GCP), and one access log line per request naming the
security policy rule and the IAP decision.
"""
from __future__ import annotations

from dataclasses import dataclass

from emulator.cloud.ingress_model import Backend, LoadBalancer, Policy

DEFAULT_404 = "be_default_404"
IAP_HEADER = "X-Goog-Authenticated-User-Email"
LOG_FORMAT = ("%ci:%cp [%tr] %ft %b/%s %TR/%Tw/%Tc/%Tr/%Ta %ST %B %tsc lb=%[var(txn.lb)] host=%[var(txn.host)] "
              "path=%HP policy=%[var(txn.armor_policy)] rule=%[var(txn.armor_rule)] "
              "action=%[var(txn.armor_action)] preview_rule=%[var(txn.armor_preview)] "
              "preview_action=%[var(txn.armor_preview_action)] iap=%[var(txn.iap)] user=%[var(txn.iap_email)]")


@dataclass(frozen=True)
class ProxySettings:
    """What is not in the Ingress: health-check timing, the stats socket, the IAP key."""

    iap_key: str
    stats_socket: str = "unix@admin.sock"   # relative paths: HAProxy runs with -C <its state dir>
    cert_dir: str = "certs"
    check_interval_ms: int = 1000
    fall: int = 2
    rise: int = 1
    check_timeout_ms: int = 1000


def _q(text: str) -> str:
    """A double-quoted haproxy string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render(lbs: list[LoadBalancer], backends: list[Backend], s: ProxySettings) -> str:
    """The whole haproxy.cfg for these load balancers and backends."""
    out = ["global",
           "    log stdout format raw local0 info",
           f"    stats socket {s.stats_socket} mode 600 level admin expose-fd listeners",
           "    hard-stop-after 30s",
           "",
           "defaults",
           "    mode http",
           "    log global",
           f"    log-format {_q(LOG_FORMAT)}",
           "    timeout connect 2s",
           "    timeout client 30s",
           "    timeout server 30s",
           "    timeout http-request 10s",
           "    timeout check 1s" if s.check_timeout_ms == 1000 else f"    timeout check {s.check_timeout_ms}ms",
           f"    default-server inter {s.check_interval_ms}ms fall {s.fall} rise {s.rise}",
           ""]
    for lb in sorted(lbs, key=lambda x: x.key):
        if lb.ip:
            out += frontend(lb, s.cert_dir)
    out += [f"backend {DEFAULT_404}",
            "    http-request return status 404 content-type text/plain string "
            + _q("default backend - 404"), ""]
    for be in sorted(backends, key=lambda b: b.name):
        out += backend(be, s.iap_key)
    return "\n".join(out) + "\n"


def frontend(lb: LoadBalancer, cert_dir: str) -> list[str]:
    """The frontend of one Ingress: binds, headers, routing."""
    name = "fe_" + lb.key.replace("/", "_")
    out = [f"frontend {name}"]
    if lb.http:
        out.append(f"    bind {lb.ip}:80")
    if lb.certs:
        crts = " ".join(f"crt {cert_dir}/{f}" for f, _ in lb.certs)
        out.append(f"    bind {lb.ip}:443 ssl {crts}")
    out += [f"    http-request set-var(txn.lb) str({lb.key})",
            "    http-request set-var(txn.host) req.hdr(host),field(1,:),lower",
            f"    http-request del-header {IAP_HEADER}",
            '    http-request set-header X-Forwarded-For "%[req.fhdr(x-forwarded-for)],%[src],%[dst]"'
            " if { req.hdr(x-forwarded-for) -m found }",
            '    http-request set-header X-Forwarded-For "%[src],%[dst]" if !{ req.hdr(x-forwarded-for) -m found }',
            "    http-request set-header X-Forwarded-Proto https if { ssl_fc }",
            "    http-request set-header X-Forwarded-Proto http if !{ ssl_fc }",
            '    http-response set-header Via "1.1 google"']
    for i, r in enumerate(lb.routes):
        conds = []
        if r.host is not None:
            if r.host.startswith("*."):
                out.append(f"    acl h{i} var(txn.host) -m end {r.host[1:]}")
            else:
                out.append(f"    acl h{i} var(txn.host) -m str {r.host}")
            conds.append(f"h{i}")
        if r.match == "exact":
            out.append(f"    acl p{i} path -m str {r.path}")
            conds.append(f"p{i}")
        elif r.match == "prefix":
            out.append(f"    acl p{i} path -m str {r.path}")
            out.append(f"    acl p{i} path -m beg {r.path}/")
            conds.append(f"p{i}")
        cond = " ".join(conds) if conds else "TRUE"
        out.append(f"    use_backend {r.backend} if {cond}")
    out += [f"    default_backend {lb.default_backend or DEFAULT_404}", ""]
    return out


def backend(be: Backend, iap_key: str) -> list[str]:
    """One backend service: balancing, health check, Cloud Armor, IAP, servers."""
    out = [f"backend {be.name}",
           "    balance roundrobin",
           f"    option httpchk GET {be.check_path}",
           "    http-check expect status 200"]
    if be.policy is not None:
        out += armor_rules(be.policy)
    if be.iap_members is not None:
        out += iap_rules(be.iap_members, iap_key)
    port = f" port {be.check_port}" if be.check_port else ""
    for sv in be.servers:
        out.append(f"    server {sv.name} {sv.ip}:{sv.port} check{port}")
    out.append("")
    return out


def _src_acl(name: str, ranges: tuple[str, ...]) -> str:
    nets = " ".join("0.0.0.0/0" if r == "*" else r for r in ranges) or "0.0.0.0/0"
    return f"    acl {name} src {nets}"


def armor_rules(p: Policy) -> list[str]:
    """Cloud Armor: the first matching rule by priority decides; preview rules only log."""
    out = [f"    http-request set-var(txn.armor_policy) str({p.name})"]
    undecided = "!{ var(txn.armor_action) -m found }"
    no_preview = "!{ var(txn.armor_preview) -m found }"
    for r in p.rules:
        acl = f"armor_{r.priority}"
        out.append(_src_acl(acl, r.src_ranges))
        if r.preview:
            when = f"if {acl} {undecided} {no_preview}"
            out += [f"    http-request set-var(txn.armor_preview_action) str({r.action}) {when}",
                    f"    http-request set-var(txn.armor_preview) str({r.priority}) {when}"]
            continue
        out += [f"    http-request set-var(txn.armor_rule) str({r.priority}) if {acl} {undecided}",
                f"    http-request set-var(txn.armor_action) str({r.action}) if {acl} {undecided}"]
    out += [f"    http-request set-var(txn.armor_rule) str(default) if {undecided}",
            f"    http-request set-var(txn.armor_action) str({p.default_action}) if {undecided}"]
    for action, status in (("deny-403", 403), ("deny-404", 404), ("deny-502", 502)):
        out.append(f"    http-request deny deny_status {status} if {{ var(txn.armor_action) -m str {action} }}")
    return out


def iap_rules(members: tuple[str, ...], key: str) -> list[str]:
    """IAP: a valid HS256 token of the run's key naming an allowed member, else 401/403."""
    undecided = "!{ var(txn.iap) -m found }"
    not_member = f"!{{ var(txn.iap_email) -m str {' '.join(members)} }}" if members else ""   # none: all denied
    return [
        "    http-request set-var(txn.jwt) http_auth_bearer",
        "    http-request set-var(txn.iap) str(anonymous) if !{ var(txn.jwt) -m found }",
        f"    http-request set-var(txn.jwt_alg) var(txn.jwt),jwt_header_query('$.alg') if {undecided}",
        f"    http-request set-var(txn.iap) str(invalid) if {undecided} !{{ var(txn.jwt_alg) -m str HS256 }}",
        f"    http-request set-var(txn.iap) str(invalid) if {undecided} "
        f"!{{ var(txn.jwt),jwt_verify(txn.jwt_alg,{_q(key)}) -m int 1 }}",
        f"    http-request set-var(txn.iap_email) var(txn.jwt),jwt_payload_query('$.email') if {undecided}",
        f"    http-request set-var(txn.iap_exp) var(txn.jwt),jwt_payload_query('$.exp','int') if {undecided}",
        "    http-request set-var(txn.now) date",
        f"    http-request set-var(txn.iap) str(expired) if {undecided} "
        "{ var(txn.iap_exp),sub(txn.now) -m int le 0 }",
        f"    http-request set-var(txn.iap) str(denied) if {undecided} {not_member}".rstrip(),
        f"    http-request set-var(txn.iap) str(allowed) if {undecided}",
        "    http-request deny deny_status 401 if { var(txn.iap) -m str anonymous invalid expired }",
        "    http-request deny deny_status 403 if { var(txn.iap) -m str denied }",
        f"    http-request set-header {IAP_HEADER} accounts.google.com:%[var(txn.iap_email)]",
    ]
