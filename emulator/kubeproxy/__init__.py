"""kube-proxy in iptables mode for one emulated node.

Layers: `model`/`tracker` (state from Service and EndpointSlice dicts), `names` and
`render` (pure rule text), `proxier` (sync logic, driven by emulator.boundedsync's thread;
its kernel adapter is `emulator.kernel.iptables`), `health` (HTTP health checks). The fake
kernel and packet tracer for tests are in tests/fakes/.
"""
