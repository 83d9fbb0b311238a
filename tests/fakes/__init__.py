"""Test doubles with real logic: an iptables ruleset and packet tracer, an OpenFlow table simulator."""
