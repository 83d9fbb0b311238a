"""The kernel layer: the one package that touches the kernel (namespaces, links, sysctls,
iptables/ipset, tc, conntrack, Open vSwitch, Mininet hosts). See docs/architecture.md."""
