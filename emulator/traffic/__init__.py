"""Real traffic generators run inside a client's network namespace, one JSON record per request.

Modules here import only the standard library so each generator starts fast in every
namespace it is launched in (`ip netns exec NS python -m emulator.traffic.http_load ...`).
"""
